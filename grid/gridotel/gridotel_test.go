package gridotel

import (
	"context"
	"fmt"
	"slices"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

func TestParsePeer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want peerAttrs
	}{
		{"http://127.0.0.1:7000", peerAttrs{"127.0.0.1", 7000}},
		{"wss://node-1.grid.svc:443/prefix", peerAttrs{"node-1.grid.svc", 443}},
		{"http://[::1]:80", peerAttrs{"::1", 80}},
		{"http://node", peerAttrs{"node", 0}},
		{"node:9", peerAttrs{"node", 9}},
		{"", peerAttrs{}},
	} {
		if got := parsePeer(tc.in); got != tc.want {
			t.Errorf("parsePeer(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestSpanSetupsBounded: the span setups kept per handler, peer, kind and
// side go with ForgetPeer, and never exceed maxSetups however many peers
// come and go; past the bound a span still gets its peer's attributes.
func TestSpanSetupsBounded(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr := New(tp, nil)
	call := func(peer string, h handlers.HandlerID) {
		info := mux.CallInfo{Handler: h, Peer: peer}
		_, _ = tr.Client(context.Background(), info, nil, func(context.Context, mux.CallInfo, []byte) ([]byte, error) { return nil, nil })
		_, _ = tr.Server(context.Background(), info, nil, func(context.Context, mux.CallInfo, []byte) ([]byte, error) { return nil, nil })
	}
	kept := func() int {
		n := 0
		tr.spans.Range(func(any, any) bool { n++; return true })
		if c := tr.nspans.Load(); int(c) != n {
			t.Fatalf("the count says %d setups, the map holds %d", c, n)
		}
		return n
	}
	h1, h2 := handlers.New(1, "one"), handlers.New(2, "two")
	for _, p := range []string{"http://a:1", "http://b:2"} {
		call(p, h1)
		call(p, h2)
	}
	if n := kept(); n != 8 {
		t.Fatalf("%d setups kept for 2 peers × 2 handlers × 2 sides, want 8", n)
	}
	tr.ForgetPeer("http://a:1")
	if n := kept(); n != 4 {
		t.Fatalf("%d setups kept after ForgetPeer, want 4", n)
	}
	for i := range maxSetups {
		call(fmt.Sprintf("http://peer-%d:%d", i, 1000+i%1000), h1)
	}
	if n := kept(); n != maxSetups {
		t.Fatalf("%d setups kept after %d peers, want the bound %d", n, maxSetups+1, maxSetups)
	}
	rec.Reset()
	call("http://late:99", h1)
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans past the bound, want 2", len(spans))
	}
	for _, s := range spans {
		if !slices.Contains(s.Attributes(), PeerKey.String("http://late:99")) || !slices.Contains(s.Attributes(), semconv.NetworkPeerPortKey.Int(99)) {
			t.Fatalf("span past the bound: attributes %v", s.Attributes())
		}
	}
}
