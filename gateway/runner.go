package gateway

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/wire"
)

// Runner runs transactions for a Gateway: a Dispatcher runs them on grid
// workers, a Local runner in this process. Its methods are unexported;
// use NewDispatcher or NewLocal.
type Runner interface {
	// reserve waits until transaction id can start and reserves capacity
	// for it. The gateway stops reading from Prime while it waits.
	reserve(ctx context.Context, id string) (slot, error)
	// run runs req with the reserved slot and releases it. It returns a
	// result, or an error only once ctx ended or with ErrTooLarge: the
	// gateway or the grid being unavailable is never an answer, so run
	// waits and tries again until the transaction has a result or the
	// gateway gives it up (and leaves it to Prime to deliver again).
	run(ctx context.Context, s slot, req *wire.TxRequest) (*wire.TxResult, error)
}

// slot is capacity reserved by Runner.reserve.
type slot any

// Local runs transactions in this process, up to a fixed number at once:
// the gateway's Prime client wired straight to a contract function, as
// Prime's client template does it, with no grid in between. When the
// gateway traces, each run is a SpanContract span under the dispatch
// span.
type Local struct {
	fn  contract.Func
	sem chan struct{}
}

// NewLocal returns a Runner that calls fn, at most capacity at a time.
func NewLocal(fn contract.Func, capacity int) *Local {
	return &Local{fn: fn, sem: make(chan struct{}, max(capacity, 1))}
}

func (l *Local) reserve(ctx context.Context, _ string) (slot, error) {
	select {
	case l.sem <- struct{}{}:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Local) run(ctx context.Context, _ slot, req *wire.TxRequest) (*wire.TxResult, error) {
	defer func() { <-l.sem }()
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		var span trace.Span
		ctx, span = parent.TracerProvider().Tracer(TracerName).Start(ctx, SpanContract)
		defer span.End()
		res := wire.Run(ctx, l.fn, req)
		if res.Error != "" {
			span.SetAttributes(AttrErrorKind.String(res.ErrorKind))
			span.SetStatus(codes.Error, res.Error)
		}
		return l.answer(ctx, res)
	}
	return l.answer(ctx, wire.Run(ctx, l.fn, req))
}

// answer is res, unless the gateway gave the transaction up (ctx ended).
func (l *Local) answer(ctx context.Context, res *wire.TxResult) (*wire.TxResult, error) {
	if ctx.Err() != nil && !res.TimedOut {
		return nil, ctx.Err() // the gateway gave it up: what the contract said is no answer
	}
	return res, nil
}
