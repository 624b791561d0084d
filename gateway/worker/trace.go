package worker

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/wire"
)

// TracerName is the instrumentation scope of a worker's spans.
const TracerName = "github.com/gridmesh/gridmesh/gateway/worker"

// Span names and attributes of a worker's trace of a transaction. The
// worker's span is a child of the span in the grid handler's context (the
// grid's server span of the gateway's call, which carries the gateway's
// dispatch span across the grid); the contract's is a child of the
// worker's, and the contract is handed its trace context (TRACEPARENT).
const (
	SpanWorker   = "worker.transaction"
	SpanContract = "contract.run"

	// AttrTransactionID is the transaction's ID: a span attribute, never
	// a metric label.
	AttrTransactionID = attribute.Key("gridmesh.transaction_id")
	// AttrWorker is the worker's grid name; AttrGateway the gateway's
	// that sent the transaction.
	AttrWorker  = attribute.Key("gridmesh.worker")
	AttrGateway = attribute.Key("gridmesh.gateway")
	// AttrOutcome says what the worker did with the transaction:
	// "ran", "joined" (it was running for an earlier call), "from_record"
	// (it had run), "refused" (draining), "given_up" (closing),
	// "cancelled" (its caller cancelled it).
	AttrOutcome = attribute.Key("gridmesh.outcome")
	// AttrMode is the contract's mode (Options.Mode).
	AttrMode = attribute.Key("gridmesh.contract.mode")
	// AttrErrorKind is a failed contract's wire.TxResult.ErrorKind.
	AttrErrorKind = attribute.Key("gridmesh.contract.error_kind")
)

// Outcomes (AttrOutcome).
const (
	outcomeRan        = "ran"
	outcomeJoined     = "joined"
	outcomeFromRecord = "from_record"
	outcomeRefused    = "refused"
	outcomeGivenUp    = "given_up"
	outcomeCancelled  = "cancelled"
)

// setOutcome notes what became of the transaction on the worker's span
// in ctx, if it records.
func setOutcome(ctx context.Context, outcome string) {
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		s.SetAttributes(AttrOutcome.String(outcome))
	}
}

// traced runs serve for req inside the worker's span, when the worker
// traces.
func (w *Worker) traced(ctx context.Context, req *wire.TxRequest, serve func(context.Context, *wire.TxRequest) (*wire.TxResult, error)) (*wire.TxResult, error) {
	if w.tracer == nil {
		return serve(ctx, req)
	}
	attrs := []attribute.KeyValue{AttrTransactionID.String(req.ID), AttrWorker.String(w.local)}
	ctx, span := w.tracer.Start(ctx, SpanWorker, trace.WithAttributes(attrs...))
	defer span.End()
	res, err := serve(ctx, req)
	switch {
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
	case res.Draining:
		span.SetStatus(codes.Error, res.Error)
	}
	return res, err
}

// startContractSpan starts the contract's span as a child of the worker's
// in ctx, when the worker traces, and returns ctx with it and with its
// trace context for the contract (contract.WithTraceContext). A span
// context in ctx without a tracer (the grid's, from the gateway) is
// handed on as it is.
func (w *Worker) startContractSpan(ctx context.Context, rn *run) (context.Context, trace.Span) {
	span := trace.SpanFromContext(ctx)
	if w.tracer != nil {
		ctx, span = w.tracer.Start(ctx, SpanContract, trace.WithAttributes(AttrMode.String(w.opts.Mode)))
		sc := span.SpanContext()
		rn.span = &sc
	}
	if parent, state := traceHeaders(ctx); parent != "" {
		ctx = contract.WithTraceContext(ctx, parent, state)
	}
	return ctx, span
}

// endContractSpan ends a span startContractSpan started.
func (w *Worker) endContractSpan(span trace.Span, res *wire.TxResult) {
	if w.tracer == nil {
		return
	}
	if res.Error != "" {
		span.SetAttributes(AttrErrorKind.String(res.ErrorKind))
		span.SetStatus(codes.Error, res.Error)
	}
	span.End()
}

// linkRun links the worker's span in ctx to the contract span of rn, the
// run a joined call waited for (it belongs to the trace of the call that
// started it).
func linkRun(ctx context.Context, rn *run) {
	if s := trace.SpanFromContext(ctx); s.IsRecording() && rn.span != nil {
		s.AddLink(trace.Link{SpanContext: *rn.span})
	}
}

// traceHeaders returns the W3C traceparent and tracestate to hand a
// contract run under ctx: those of its span context, if valid, else those
// it carries for contracts (contract.TraceParent), if any.
func traceHeaders(ctx context.Context) (parent, state string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return contract.TraceParent(ctx), contract.TraceState(ctx)
	}
	var c headerCarrier
	propagation.TraceContext{}.Inject(ctx, &c)
	return c.parent, c.state
}

// headerCarrier takes the two W3C headers without a map.
type headerCarrier struct{ parent, state string }

func (c *headerCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}

func (c *headerCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.parent = value
	case "tracestate":
		c.state = value
	}
}

func (c *headerCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// processKind refines a failed result's kind: a failure of the contract
// process rather than of the contract (wire.KindProcess).
func processKind(res *wire.TxResult, err error) {
	if res.Error != "" && !res.TimedOut && (errors.Is(err, ErrProcessExited) || errors.Is(err, ErrProcessProtocol) ||
		errors.Is(err, ErrProcessWedged) || errors.Is(err, ErrProcessDown) || errors.Is(err, ErrProcessClosed)) {
		res.ErrorKind = wire.KindProcess
	}
}
