package contract

import "context"

// A transaction's trace context travels to its contract as W3C Trace
// Context (https://www.w3.org/TR/trace-context/): the traceparent of the
// worker's span around the contract's run, and the tracestate, if any.
// An exec contract finds them in its TRACEPARENT and TRACESTATE
// environment variables, a process contract in its request line's
// traceparent and tracestate fields (PROCESS.md), and a Go contract in
// its context: TraceParent and TraceState. A contract that makes spans of
// its own parents them on it (with OpenTelemetry, its TraceContext
// propagator extracts the two strings), so that they join the
// transaction's trace. Without tracing both are empty.

// traceKey is the context key of a traceContext.
type traceKey struct{}

// traceContext is a transaction's W3C trace context, as text.
type traceContext struct{ parent, state string }

// WithTraceContext returns a copy of ctx carrying a transaction's W3C
// trace context: traceparent (e.g.
// "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") and
// tracestate ("" for none). ServeProcess calls it for each request that
// carries one; a worker calls it for its Go contracts. An empty
// traceparent returns ctx unchanged.
func WithTraceContext(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, traceContext{parent: traceparent, state: tracestate})
}

// TraceParent returns the W3C traceparent of the transaction ctx belongs
// to, as the worker sent it, or "" when it was not traced.
func TraceParent(ctx context.Context) string {
	tc, _ := ctx.Value(traceKey{}).(traceContext)
	return tc.parent
}

// TraceState returns the W3C tracestate that goes with TraceParent, or
// "" when there is none.
func TraceState(ctx context.Context) string {
	tc, _ := ctx.Value(traceKey{}).(traceContext)
	return tc.state
}
