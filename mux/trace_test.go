package mux_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

const (
	testParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	testState  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
)

// TestTraceContextCarried: the trace context a caller puts in its context
// reaches the serving side's interceptors, for a request in one frame, one
// in chunks, and a stream open; a call without one carries none.
func TestTraceContextCarried(t *testing.T) {
	got := make(chan mux.CallInfo, 1)
	sic := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		got <- info
		return next(ctx, info, req)
	}
	ssic := func(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
		got <- info
		return next(ctx, info, payload)
	}
	scfg := mux.Config{ServerInterceptors: []mux.ServerInterceptor{sic}, ServerStreamInterceptors: []mux.ServerStreamInterceptor{ssic}}
	forEachTransport(t, func(t *testing.T, tr transport) {
		p := newPair(t, tr, interceptRegistry(t), mux.Config{}, scfg)
		traced := mux.WithTraceContext(testCtx(t), testParent, testState)
		check := func(what string, wantParent, wantState string) {
			t.Helper()
			info := recv(t, got)
			if info.TraceParent != wantParent || info.TraceState != wantState {
				t.Fatalf("%s: server saw %q %q, want %q %q", what, info.TraceParent, info.TraceState, wantParent, wantState)
			}
		}
		for _, n := range []int{0, 512, 3*mux.MaxFramePayload + 7} {
			payload := randomBytes(n)
			resp, err := p.client.Request(traced, hEcho, payload)
			if err != nil || string(resp) != string(payload) {
				t.Fatalf("%d bytes: %d bytes back, %v", n, len(resp), err)
			}
			check("request", testParent, testState)
		}
		if _, err := p.client.Request(testCtx(t), hEcho, []byte("x")); err != nil {
			t.Fatal(err)
		}
		check("request without trace", "", "")
		noState := mux.WithTraceContext(testCtx(t), testParent, "")
		if _, err := p.client.Request(noState, hEcho, []byte("x")); err != nil {
			t.Fatal(err)
		}
		check("request without tracestate", testParent, "")

		for _, payload := range [][]byte{nil, randomBytes(2*mux.MaxFramePayload + 1)} {
			st, err := p.client.NewStream(traced, hsEcho, payload)
			if err != nil {
				t.Fatal(err)
			}
			check("stream open", testParent, testState)
			st.CloseSend()
			for r := range st.Responses {
				if r.Err != nil {
					t.Fatal(r.Err)
				}
			}
		}
	})
}

// TestWithTraceContext: what WithTraceContext accepts, and what it does
// with what it does not.
func TestWithTraceContext(t *testing.T) {
	ctx := context.Background()
	if p, s := mux.TraceContext(ctx); p != "" || s != "" {
		t.Fatalf("empty context: %q %q", p, s)
	}
	traced := mux.WithTraceContext(ctx, testParent, testState)
	if p, s := mux.TraceContext(traced); p != testParent || s != testState {
		t.Fatalf("traced: %q %q", p, s)
	}
	for _, bad := range []string{
		"",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",       // no flags
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper case
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace ID
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero span ID
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx", // version 00 with more
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01xx",  // later version, no dash
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		if p, _ := mux.TraceContext(mux.WithTraceContext(ctx, bad, testState)); p != "" {
			t.Errorf("%q accepted", bad)
		}
		// An invalid one replaces a valid one: the call goes without.
		if p, _ := mux.TraceContext(mux.WithTraceContext(traced, bad, "")); p != "" {
			t.Errorf("%q over a valid one left %q", bad, p)
		}
	}
	later := "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
	if p, _ := mux.TraceContext(mux.WithTraceContext(ctx, later, "")); p != later {
		t.Errorf("a later version's traceparent %q refused", later)
	}
	for _, st := range []string{strings.Repeat("a", mux.MaxTraceState+1), "k=v\n"} {
		if p, s := mux.TraceContext(mux.WithTraceContext(ctx, testParent, st)); p != testParent || s != "" {
			t.Errorf("tracestate %.20q: %q %q, want the traceparent alone", st, p, s)
		}
	}
}

// TestTraceAllocs: a call without a trace context costs no allocation
// more with interceptors than without (TestInterceptorsAllocs); this one
// checks the traced path stays bounded: the serving side makes the two
// strings of CallInfo and the trace's record, nothing per byte.
func TestTraceAllocs(t *testing.T) {
	if mux.RaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	sic := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		return next(ctx, info, req)
	}
	p := newPair(t, transports[1], echoRegistry(t), mux.Config{}, mux.Config{ServerInterceptors: []mux.ServerInterceptor{sic}})
	ctx := mux.WithTraceContext(context.Background(), testParent, testState)
	payload := make([]byte, 512)
	call := func() {
		resp, err := p.client.Request(ctx, hEcho, payload)
		if err != nil {
			t.Fatal(err)
		}
		mux.Recycle(resp)
	}
	for range 100 {
		call()
	}
	if n := testing.AllocsPerRun(300, call); n > 4.2 {
		t.Fatalf("%.2f allocations per traced round trip, want at most 4", n)
	}
}

var _ = handlers.MaxHandlerID
