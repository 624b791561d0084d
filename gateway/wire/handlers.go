package wire

import (
	"errors"

	"github.com/gridmesh/gridmesh/handlers"
)

// The handlers a worker serves to the gateway.
var (
	// HandlerInfo answers a WorkerInfo: the worker's capacity.
	HandlerInfo = handlers.New(200, "gateway-info")
	// HandlerRun runs one transaction: TxRequest in, TxResult out.
	HandlerRun = handlers.New(201, "gateway-run")
	// HandlerRecent answers the worker's Recent transaction IDs.
	HandlerRecent = handlers.New(202, "gateway-recent")

	// InfoCall is HandlerInfo, typed: the worker registers it, the
	// gateway calls it.
	InfoCall = handlers.NewSingle(HandlerInfo, func() *handlers.NoPayload { return new(handlers.NoPayload) }, func() *WorkerInfo { return new(WorkerInfo) })
	// RunCall is HandlerRun, typed.
	RunCall = handlers.NewSingle(HandlerRun, func() *TxRequest { return new(TxRequest) }, func() *TxResult { return new(TxResult) })
	// RecentCall is HandlerRecent, typed.
	RecentCall = handlers.NewSingle(HandlerRecent, func() *handlers.NoPayload { return new(handlers.NoPayload) }, func() *Recent { return new(Recent) })
)

// ErrContractTimeout is the cause (context.Cause) of a contract's context
// when TxRequest.Timeout passed.
var ErrContractTimeout = errors.New("contract deadline passed")

// ErrDraining: a worker refused a transaction because it is shutting down.
// Its text leads the Error of a TxResult with Draining set; the gateway
// sends such transactions to another worker.
var ErrDraining = errors.New("gateway: worker draining")
