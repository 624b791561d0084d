package grid

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/handlers"
)

var (
	hSpan  = handlers.New(160, "span-id")  // answers the span ID in its context
	hsSpan = handlers.New(161, "span-ids") // sends it, for each message
	hFails = handlers.New(162, "fails")
)

// TestTracingTwoNodes: with TracerProvider set on two real nodes, a
// request and a stream each make a client span on the caller and a server
// span on the peer, in one trace, the server span a child of the client
// span and the span in the handler's context; attributes as gridotel
// documents them; a failed call's spans have status Error.
func TestTracingTwoNodes(t *testing.T) {
	lns, names := listen(t, 2)
	rec := [2]*tracetest.SpanRecorder{tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()}
	nodes := [2]*node{}
	for i := range nodes {
		o := baseOptions(names[i], names)
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec[i]), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		o.TracerProvider = tp
		nodes[i] = startNode(t, lns[i], o)
		spanID := func(ctx context.Context) []byte {
			return []byte(trace.SpanFromContext(ctx).SpanContext().SpanID().String())
		}
		must(t, nodes[i].m.RegisterSingleHandler(hSpan, func(ctx context.Context, _ []byte) ([]byte, error) { return spanID(ctx), nil }))
		must(t, nodes[i].m.RegisterSingleHandler(hFails, func(context.Context, []byte) ([]byte, error) { return nil, context.DeadlineExceeded }))
		must(t, nodes[i].m.RegisterStreamHandler(hsSpan, handlers.StreamHandler{InCapacity: 1, OutCapacity: 1,
			Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
				for {
					if _, err := st.Recv(ctx); err != nil {
						return nil
					}
					if err := st.Send(ctx, spanID(ctx)); err != nil {
						return err
					}
				}
			}}))
	}
	ctx := testCtx(t)
	conn := nodes[0].m.Connection(names[1])
	must(t, conn.WaitForConnect(ctx))

	// A parent span of the caller's own: the client span is its child.
	parentTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec[0]))
	t.Cleanup(func() { parentTP.Shutdown(context.Background()) })
	ctx, parent := parentTP.Tracer("test").Start(ctx, "transaction")
	got, err := conn.Request(ctx, hSpan, nil)
	must(t, err)
	st, err := conn.NewStream(ctx, hsSpan, nil)
	must(t, err)
	st.Requests <- []byte("x")
	r := <-st.Responses
	must(t, r.Err)
	close(st.Requests)
	for r := range st.Responses {
		must(t, r.Err)
	}
	if _, err := conn.Request(ctx, hFails, nil); err == nil {
		t.Fatal("fails: no error")
	}
	parent.End()

	// The client span of a stream ends when its Responses closed: wait for
	// it on another goroutine (OnEnd) without sleeping.
	waitFor(t, "the spans", func() bool { return len(rec[0].Ended()) == 4 && len(rec[1].Ended()) == 3 })
	byName := func(spans []sdktrace.ReadOnlySpan, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
		for _, s := range spans {
			if s.Name() == name && s.SpanKind() == kind {
				return s
			}
		}
		t.Fatalf("no %v span %q among %d", kind, name, len(spans))
		return nil
	}
	for _, tc := range []struct {
		name   string
		h      handlers.HandlerID
		stream bool
		answer string // the server span's ID, as the handler saw it
	}{
		{"gridmesh/span-id", hSpan, false, string(got)},
		{"gridmesh/span-ids", hsSpan, true, string(r.Msg)},
		{"gridmesh/fails", hFails, false, ""},
	} {
		client := byName(rec[0].Ended(), tc.name, trace.SpanKindClient)
		server := byName(rec[1].Ended(), tc.name, trace.SpanKindServer)
		if client.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: client span's parent %v, want the caller's span %v", tc.name, client.Parent().SpanID(), parent.SpanContext().SpanID())
		}
		if server.SpanContext().TraceID() != parent.SpanContext().TraceID() || client.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("%s: trace IDs %v %v, want %v", tc.name, client.SpanContext().TraceID(), server.SpanContext().TraceID(), parent.SpanContext().TraceID())
		}
		if server.Parent().SpanID() != client.SpanContext().SpanID() || !server.Parent().IsRemote() {
			t.Errorf("%s: server span's parent %v (remote %v), want the client span %v", tc.name, server.Parent().SpanID(), server.Parent().IsRemote(), client.SpanContext().SpanID())
		}
		if tc.answer != "" && tc.answer != server.SpanContext().SpanID().String() {
			t.Errorf("%s: the handler's context had span %s, want the server span %s", tc.name, tc.answer, server.SpanContext().SpanID())
		}
		want := map[attribute.Key]attribute.Value{
			"rpc.system":           attribute.StringValue("gridmesh"),
			"rpc.method":           attribute.StringValue(tc.h.Name()),
			"gridmesh.handler.id":  attribute.IntValue(int(tc.h)),
			"gridmesh.peer":        attribute.StringValue(names[1]),
			"server.address":       attribute.StringValue("127.0.0.1"),
			"network.peer.address": attribute.StringValue("127.0.0.1"),
		}
		if tc.stream {
			want["gridmesh.stream"] = attribute.BoolValue(true)
		}
		checkAttrs(t, tc.name+" client", client.Attributes(), want)
		want["gridmesh.peer"] = attribute.StringValue(names[0])
		delete(want, "server.address")
		checkAttrs(t, tc.name+" server", server.Attributes(), want)
		failed := tc.h == hFails
		for _, s := range []sdktrace.ReadOnlySpan{client, server} {
			if (s.Status().Code == codes.Error) != failed {
				t.Errorf("%s %v: status %v", tc.name, s.SpanKind(), s.Status())
			}
			if failed {
				checkAttrs(t, tc.name, s.Attributes(), map[attribute.Key]attribute.Value{"error.type": attribute.StringValue("deadline")})
			}
		}
		t.Logf("%s: client span %s (parent %s), server span %s (parent %s, remote), trace %s",
			tc.name, client.SpanContext().SpanID(), client.Parent().SpanID(), server.SpanContext().SpanID(), server.Parent().SpanID(), server.SpanContext().TraceID())
		t.Logf("  client attributes %v", client.Attributes())
		t.Logf("  server attributes %v", server.Attributes())
	}
}

func checkAttrs(t *testing.T, what string, got []attribute.KeyValue, want map[attribute.Key]attribute.Value) {
	t.Helper()
	have := map[attribute.Key]attribute.Value{}
	for _, kv := range got {
		have[kv.Key] = kv.Value
	}
	for k, v := range want {
		if have[k] != v {
			t.Errorf("%s: %s = %v, want %v", what, k, have[k].String(), v.String())
		}
	}
}
