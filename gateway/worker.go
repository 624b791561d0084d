package gateway

import (
	"context"
	"sync/atomic"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
)

// The handlers a worker serves to the gateway.
var (
	// HandlerInfo answers a WorkerInfo: the worker's capacity.
	HandlerInfo = handlers.New(200, "gateway-info")
	// HandlerRun runs one transaction: TxRequest in, TxResult out.
	HandlerRun = handlers.New(201, "gateway-run")

	infoCall = handlers.NewSingle(HandlerInfo, func() *handlers.NoPayload { return new(handlers.NoPayload) }, func() *WorkerInfo { return new(WorkerInfo) })
	runCall  = handlers.NewSingle(HandlerRun, func() *TxRequest { return new(TxRequest) }, func() *TxResult { return new(TxResult) })
)

// WorkerOptions configure a Worker.
type WorkerOptions struct {
	// Contract runs each transaction. Required. ExecContract makes one that
	// runs a command per transaction; a ProcessPool's Contract method sends
	// it to a long-lived process.
	Contract Contract
	// Capacity is how many transactions run at once; the worker advertises
	// it to the gateway, which never sends more. Default 1.
	Capacity int
	// Mode names the kind of contract for logs ("func", "exec",
	// "process"). Default "func".
	Mode string
}

// Worker serves transactions to the gateways of its grid. It registers
// HandlerInfo and HandlerRun on a grid Manager; the gateway finds it by
// calling HandlerInfo on every peer that connects.
//
// All methods may be called concurrently.
type Worker struct {
	opts WorkerOptions
	sem  chan struct{}
	done atomic.Uint64
}

// NewWorker registers a worker's handlers on m.
func NewWorker(m *grid.Manager, opts WorkerOptions) (*Worker, error) {
	if opts.Contract == nil {
		return nil, configError("WorkerOptions.Contract", "is required")
	}
	if opts.Capacity < 0 {
		return nil, configError("WorkerOptions.Capacity", "must not be negative")
	}
	setDefault(&opts.Capacity, 1)
	if opts.Mode == "" {
		opts.Mode = "func"
	}
	w := &Worker{opts: opts, sem: make(chan struct{}, opts.Capacity)}
	reg := m.Registry()
	if err := infoCall.Register(reg, w.info); err != nil {
		return nil, err
	}
	if err := runCall.Register(reg, w.run); err != nil {
		return nil, err
	}
	return w, nil
}

// Capacity returns how many transactions the worker runs at once.
func (w *Worker) Capacity() int { return w.opts.Capacity }

// Running returns the number of transactions running now.
func (w *Worker) Running() int { return len(w.sem) }

// Done returns the number of transactions this worker has finished.
func (w *Worker) Done() uint64 { return w.done.Load() }

func (w *Worker) info(context.Context, *handlers.NoPayload) (*WorkerInfo, error) {
	return &WorkerInfo{Capacity: w.opts.Capacity, Running: w.Running(), Mode: w.opts.Mode}, nil
}

func (w *Worker) run(ctx context.Context, req *TxRequest) (*TxResult, error) {
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() {
		w.done.Add(1)
		<-w.sem
	}()
	return callContract(ctx, w.opts.Contract, req), nil
}
