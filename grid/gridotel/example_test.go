package gridotel_test

import (
	"context"
	"fmt"
	"net"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/grid/gridotel"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var hello = handlers.New(30, "hello")

// Tracing on two bare mux sessions: the server span is the child of the
// client span, and the span in the handler's context. (On a grid, set
// grid.Options.TracerProvider instead.)
func ExampleTracing() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tr := gridotel.New(tp, nil)

	reg := new(handlers.Registry)
	reg.RegisterSingle(hello, func(ctx context.Context, _ []byte) ([]byte, error) {
		return []byte(trace.SpanFromContext(ctx).SpanContext().SpanID().String()), nil
	})
	a, b := net.Pipe()
	client, _ := mux.NewSession(a, nil, mux.Config{Peer: "http://server:7000", ClientInterceptors: []mux.ClientInterceptor{tr.Client}})
	server, _ := mux.NewSession(b, reg, mux.Config{Peer: "http://client:7000", ServerInterceptors: []mux.ServerInterceptor{tr.Server}})
	defer server.Close()
	defer client.Close()

	inHandler, _ := client.Request(context.Background(), hello, nil)
	spans := rec.Ended() // the server span ended before its answer left
	srv, cli := spans[0], spans[1]
	fmt.Println(cli.Name(), cli.SpanKind(), "→", srv.Name(), srv.SpanKind())
	fmt.Println("server span's parent is the client span:", srv.Parent().SpanID() == cli.SpanContext().SpanID())
	fmt.Println("one trace:", srv.SpanContext().TraceID() == cli.SpanContext().TraceID())
	fmt.Println("the handler's span is the server span:", string(inHandler) == srv.SpanContext().SpanID().String())
	// Output:
	// gridmesh/hello client → gridmesh/hello server
	// server span's parent is the client span: true
	// one trace: true
	// the handler's span is the server span: true
}
