package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
)

// Kinds of contract error (TxResult.ErrorKind): a bounded set, fit for a
// metric's label.
const (
	// KindError: the contract failed (its error, a non-zero exit, an
	// answer that is not JSON).
	KindError = "error"
	// KindTimeout: the contract ran past TxRequest.Timeout.
	KindTimeout = "timeout"
	// KindPanic: a Go contract panicked (contract.ErrPanicked).
	KindPanic = "panic"
	// KindProcess: the worker's contract process failed the transaction:
	// it exited, broke the line protocol, was wedged, or none was up.
	KindProcess = "process"
)

// Kinds lists every kind of contract error, in a fixed order.
var Kinds = []string{KindError, KindTimeout, KindPanic, KindProcess}

// ErrorKindOf returns res's kind of contract error: "" for a result
// without one, its ErrorKind if it is one of Kinds, else KindTimeout or
// KindError as its TimedOut says (a worker before the field).
func ErrorKindOf(res *TxResult) string {
	switch {
	case res.Error == "":
		return ""
	case res.ErrorKind == KindError, res.ErrorKind == KindTimeout, res.ErrorKind == KindPanic, res.ErrorKind == KindProcess:
		return res.ErrorKind
	case res.TimedOut:
		return KindTimeout
	}
	return KindError
}

// Run runs fn for req, within req.Timeout if it is set, and turns its
// outcome, a panic included (contract.Call), into req's TxResult: how a
// worker, or a gateway that runs contracts in its own process, answers a
// transaction. A contract that fails once its deadline passed has
// TimedOut set. ErrorKind is set for a failure (KindError, KindTimeout or
// KindPanic) and Duration to the contract's run time.
func Run(ctx context.Context, fn contract.Func, req *TxRequest) *TxResult {
	res, _ := RunContract(ctx, fn, req)
	return res
}

// RunContract is Run, and returns the contract's error too, for a caller
// that classifies it further.
func RunContract(ctx context.Context, fn contract.Func, req *TxRequest) (*TxResult, error) {
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(req.Timeout), ErrContractTimeout)
		defer cancel()
	}
	start := time.Now()
	out, err := contract.Call(ctx, fn, req.JSON, req.EnvVars, req.Secrets)
	res := &TxResult{ID: req.ID, ResultJSON: out.ResultJSON, OutputToChain: out.OutputToChain, Logs: out.Logs,
		Duration: int64(time.Since(start))}
	if err != nil {
		res.Error, res.ErrorKind = err.Error(), KindError
		switch {
		case errors.Is(context.Cause(ctx), ErrContractTimeout):
			res.TimedOut, res.ErrorKind = true, KindTimeout
			res.Error = fmt.Sprintf("contract timed out after %v: %v", time.Duration(req.Timeout), err)
		case errors.Is(err, contract.ErrPanicked):
			res.ErrorKind = KindPanic
		}
	}
	return res, err
}
