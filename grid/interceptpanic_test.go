package grid

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var hsOnce = handlers.New(170, "grid-stream-once") // sends one message and returns

// serveOnce is hsOnce's handler.
var serveOnce = handlers.StreamHandler{OutCapacity: 4,
	Serve: func(ctx context.Context, _ []byte, s handlers.ServerStream) error { return s.Send(ctx, []byte("x")) }}

// TestInterceptorPanicMetricsAndSpans: a user's interceptor that panics,
// inside the grid's metrics and tracing, leaves neither open. Serving,
// mux recovers the panic at the interceptor's level: the grid's
// interceptors see a panic error, the active-streams gauge comes back to
// 0, the panics are counted and the server spans end with error.type
// panic. Calling, the panic goes on up to the caller, and the grid's
// interceptors record the call as it passes: counted, span ended.
func TestInterceptorPanicMetricsAndSpans(t *testing.T) {
	lns, names := listen(t, 2)
	rec := [2]*tracetest.SpanRecorder{tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()}
	opts := [2]Options{baseOptions(names[0], names), baseOptions(names[1], names)}
	for i := range opts {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec[i]))
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		opts[i].TracerProvider = tp
	}
	opts[0].ClientInterceptors = []mux.ClientInterceptor{func(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
		if string(req) == "boom" {
			panic("client interceptor bug")
		}
		return next(ctx, info, req)
	}}
	opts[0].ClientStreamInterceptors = []mux.ClientStreamInterceptor{func(ctx context.Context, info mux.CallInfo, p []byte, next mux.StreamOpener) (*mux.Stream, error) {
		if string(p) == "boom" {
			panic("client stream interceptor bug")
		}
		return next(ctx, info, p)
	}}
	opts[1].ServerInterceptors = []mux.ServerInterceptor{func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		if info.Handler == hWho {
			panic("server interceptor bug")
		}
		return next(ctx, info, req)
	}}
	opts[1].ServerStreamInterceptors = []mux.ServerStreamInterceptor{func(ctx context.Context, info mux.CallInfo, p []byte, next mux.StreamRunner) error {
		panic("server stream interceptor bug")
	}}
	a, b := startNode(t, lns[0], opts[0]), startNode(t, lns[1], opts[1])
	streamHandler(t, hsOnce, serveOnce, a, b)
	ctx := testCtx(t)
	conn := a.m.Connection(names[1])
	must(t, conn.WaitForConnect(ctx))

	for range 3 {
		if _, err := conn.Request(ctx, hWho, nil); !errors.Is(err, mux.ErrHandlerPanic) {
			t.Fatalf("request: %v, want a panic error", err)
		}
		st, err := conn.NewStream(ctx, hsOnce, nil)
		must(t, err)
		if rs := drain(t, st); len(rs) == 0 || !errors.Is(rs[len(rs)-1].Err, mux.ErrHandlerPanic) {
			t.Fatalf("stream: %+v, want a panic error last", rs)
		}
	}
	mustPanic(t, func() { _, _ = conn.Request(ctx, hWho, []byte("boom")) })
	mustPanic(t, func() { _, _ = conn.NewStream(ctx, hsOnce, []byte("boom")) })
	noStreamState(t, a, b)

	series := func(name, h string, id int, side, extra string) string {
		return fmt.Sprintf(`%s{handler="%s",handler_id="%d",%sside="%s"}`, name, h, id, extra, side)
	}
	for _, n := range []struct {
		node *node
		want []string
	}{
		{b, []string{
			series("gridmesh_rpc_streams_active", "grid-stream-once", 170, "server", "") + " 0",
			series("gridmesh_rpc_errors_total", "grid-stream-once", 170, "server", `kind="panic",`) + " 3",
			series("gridmesh_rpc_errors_total", "grid-who", 101, "server", `kind="panic",`) + " 3",
			series("gridmesh_rpc_duration_seconds_count", "grid-who", 101, "server", "") + " 3",
			series("gridmesh_rpc_duration_seconds_count", "grid-stream-once", 170, "server", "") + " 3",
		}},
		{a, []string{
			// The three remote panics, and the local one.
			series("gridmesh_rpc_errors_total", "grid-who", 101, "client", `kind="panic",`) + " 4",
			series("gridmesh_rpc_errors_total", "grid-stream-once", 170, "client", `kind="panic",`) + " 4",
			series("gridmesh_rpc_duration_seconds_count", "grid-who", 101, "client", "") + " 4",
			series("gridmesh_rpc_streams_active", "grid-stream-once", 170, "client", "") + " 0",
		}},
	} {
		text := exposition(t, n.node.m.Collector())
		for _, w := range n.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s's metrics lack %s:\n%s", n.node.name, w, text)
			}
		}
	}

	// Every span ended, as a panic: 6 on the server, 8 on the caller (a
	// stream's client span ends off the session's reader: wait for it).
	waitFor(t, "the spans", func() bool { return len(rec[0].Ended()) == 8 && len(rec[1].Ended()) == 6 })
	for i, r := range rec {
		for _, s := range r.Ended() {
			if !slices.Contains(s.Attributes(), semconv.ErrorTypeKey.String("panic")) {
				t.Errorf("node %d: span %s %v ended without error.type panic: %v", i, s.Name(), s.SpanKind(), s.Attributes())
			}
		}
	}
}

// mustPanic runs f, which must panic.
func mustPanic(tb testing.TB, f func()) {
	tb.Helper()
	defer func() {
		if recover() == nil {
			tb.Fatal("no panic")
		}
	}()
	f()
}
