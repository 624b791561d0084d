package grid

import (
	"context"
	"sync"
	"testing"

	"github.com/gridmesh/gridmesh/mux"
)

// TestInterceptorsGrid: the interceptors in Options run on every
// connection, before those in Options.Mux, with the peer's host as
// CallInfo.Peer on both sides; a trace context crosses the hop.
func TestInterceptorsGrid(t *testing.T) {
	lns, names := listen(t, 2)
	var mu sync.Mutex
	var seen []string
	note := func(s string) {
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
	}
	client := func(name string) mux.ClientInterceptor {
		return func(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
			note(name + " " + info.Peer)
			return next(ctx, info, req)
		}
	}
	server := func(name string) mux.ServerInterceptor {
		return func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
			note(name + " " + info.Peer + " " + info.TraceParent)
			return next(ctx, info, req)
		}
	}
	opts := func(i int) Options {
		o := baseOptions(names[i], names)
		o.ClientInterceptors = []mux.ClientInterceptor{client("grid-client")}
		o.ServerInterceptors = []mux.ServerInterceptor{server("grid-server")}
		o.Mux.ClientInterceptors = []mux.ClientInterceptor{client("mux-client")}
		o.Mux.ServerInterceptors = []mux.ServerInterceptor{server("mux-server")}
		return o
	}
	a := startNode(t, lns[0], opts(0))
	startNode(t, lns[1], opts(1))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := mux.WithTraceContext(testCtx(t), parent, "")
	conn := a.m.Connection(names[1])
	must(t, conn.WaitForConnect(ctx))
	resp, err := conn.Request(ctx, hWho, []byte("x"))
	if err != nil || string(resp) != names[1]+":x" {
		t.Fatalf("request: %q %v", resp, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"grid-client " + names[1], "mux-client " + names[1],
		"grid-server " + names[0] + " " + parent, "mux-server " + names[0] + " " + parent,
	}
	if len(seen) != len(want) {
		t.Fatalf("interceptors ran %q, want %q", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("interceptors ran %q, want %q", seen, want)
		}
	}
}
