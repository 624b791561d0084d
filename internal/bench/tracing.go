package bench

import (
	"context"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracerProvider, if set, traces the calls of the grid nodes the
// benchmarks start (grid.Options.TracerProvider), to measure what tracing
// costs. Set it before starting them.
var TracerProvider trace.TracerProvider

// DisableMetrics, if set, turns the grid's per-handler metrics off on the
// grid nodes the benchmarks start (grid.Options.DisableMetrics), to
// measure what the default metrics cost.
var DisableMetrics bool

// InlineEcho, if set, registers gridmesh's echo single handler inline
// (handlers.Registry.RegisterInline) on the grid nodes and mux sessions
// the benchmarks start: the handler then runs on the connection's reader
// instead of on a worker. Set it before starting them.
var InlineEcho bool

// NewDiscardingTracerProvider returns a TracerProvider that samples every
// span and exports it, batched as a real exporter would be, to nowhere:
// what tracing costs the process without a collector's costs. Shut it
// down when done.
func NewDiscardingTracerProvider() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
}

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
