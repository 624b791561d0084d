package mux

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

const wireParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

var hTraced = handlers.New(60, "traced")

// traceBin is wireParent's binary form, followed by state.
func traceBin(state string) []byte {
	b, _ := hex.DecodeString("00" + "4bf92f3577b34da6a3ce929d0e0e4736" + "00f067aa0ba902b7" + "01")
	return append(b, state...)
}

// TestTraceFrameSent: a session sends a call's trace context as an
// OpTrace frame right before the call's first chunk to a version 3 peer,
// and nothing to a version 2 peer, which gets the call alone.
func TestTraceFrameSent(t *testing.T) {
	for _, version := range []uint8{2, 3} {
		p := newRawPeer(t, nil, version)
		// Each call ends after 500 ms: time for its frames to be sent on a
		// loaded machine.
		ctx, cancel := context.WithTimeout(WithTraceContext(context.Background(), wireParent, "k=v"), 500*time.Millisecond)
		_, _ = p.s.Request(ctx, hTraced, []byte("x")) // nobody answers: it times out
		cancel()
		ctx, cancel = context.WithCancel(WithTraceContext(context.Background(), wireParent, ""))
		go func() {
			time.Sleep(500 * time.Millisecond)
			cancel()
		}()
		_, _ = p.s.NewStream(ctx, hTraced, nil) // nobody accepts: cancelled
		deadline := time.Now().Add(10 * time.Second)
		var frames []Header
		for {
			frames, _ = p.received()
			n := 0
			for _, f := range frames {
				if f.Op == OpRequest || f.Op == OpStreamOpen {
					n++
				}
			}
			if n == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("v%d: the session sent %v", version, frames)
			}
			time.Sleep(time.Millisecond)
		}
		var ops []string
		for _, f := range frames {
			if f.Op == OpTrace || f.Op == OpRequest || f.Op == OpStreamOpen {
				ops = append(ops, f.Op.String())
			}
		}
		want := "request stream-open"
		if version == 3 {
			want = "trace request trace stream-open"
		}
		if got := strings.Join(ops, " "); got != want {
			t.Fatalf("v%d: sent %q, want %q", version, got, want)
		}
		p.mu.Lock()
		traces := p.traces
		p.mu.Unlock()
		if version == 3 {
			if string(traces[0]) != string(traceBin("k=v")) || string(traces[1]) != string(traceBin("")) {
				t.Fatalf("trace payloads %x", traces)
			}
			for i, f := range frames {
				if f.Op == OpTrace && (frames[i+1].ID != f.ID || f.Handler != 0 || f.Seq != 0 || f.Deadline != 0) {
					t.Fatalf("trace frame %+v before %+v", f, frames[i+1])
				}
			}
		}
	}
}

// TestTraceFrameBad: an OpTrace in a version 2 session, one not followed
// by its call's first chunk, one with a header field other than op, id
// and length set, and a malformed one each break the protocol, with a
// reason.
func TestTraceFrameBad(t *testing.T) {
	req := func(id uint64) (Header, []byte) {
		return Header{Op: OpRequest, Handler: hTraced, ID: id}, []byte("x")
	}
	zeroTrace := traceBin("")
	copy(zeroTrace[1:17], make([]byte, 16))
	zeroSpan := traceBin("")
	copy(zeroSpan[17:25], make([]byte, 8))
	ff := traceBin("")
	ff[0] = 0xff
	for _, tc := range []struct {
		name    string
		version uint8
		hdr     Header // the trace frame's header; zero: {Op: OpTrace, ID: 1}
		trace   []byte
		next    func() (Header, []byte)
		reason  string
	}{
		{"v2", 2, Header{}, traceBin(""), nil, "trace frame in a version 2 session"},
		{"other id", 3, Header{}, traceBin(""), func() (Header, []byte) { return req(2) }, "not the call's first chunk"},
		{"ping", 3, Header{}, traceBin(""), func() (Header, []byte) { return Header{Op: OpPing, ID: 1}, nil }, "not the call's first chunk"},
		{"two", 3, Header{}, traceBin(""), func() (Header, []byte) { return Header{Op: OpTrace, ID: 1}, traceBin("") }, "not the call's first chunk"},
		{"response", 3, Header{}, traceBin(""), func() (Header, []byte) { return Header{Op: OpResponse, ID: 1}, nil }, "not the call's first chunk"},
		{"short", 3, Header{}, traceBin("")[:25], nil, "trace frame of 25 bytes"},
		{"oversized", 3, Header{}, traceBin(strings.Repeat("a", MaxTraceState+1)), nil, "trace frame of 539 bytes"},
		{"zero trace id", 3, Header{}, zeroTrace, nil, "all-zero trace ID"},
		{"zero span id", 3, Header{}, zeroSpan, nil, "all-zero span ID"},
		{"version ff", 3, Header{}, ff, nil, "version ff"},
		{"tracestate byte", 3, Header{}, traceBin("k=\x00"), nil, "tracestate byte 0x0"},
		// SPEC.md: flags, handler, seq and deadline are 0.
		{"seq", 3, Header{Op: OpTrace, ID: 1, Seq: 9}, traceBin(""), nil, "trace frame with seq 9 and deadline 0"},
		{"deadline", 3, Header{Op: OpTrace, ID: 1, Deadline: 77}, traceBin(""), nil, "trace frame with seq 0 and deadline 77"},
		{"flags", 3, Header{Op: OpTrace, ID: 1, Flags: FlagMore}, traceBin(""), nil, "trace frame with flags"},
		{"handler", 3, Header{Op: OpTrace, ID: 1, Handler: hTraced}, traceBin(""), nil, "trace frame names handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newRawPeer(t, nil, tc.version)
			hdr := tc.hdr
			if hdr == (Header{}) {
				hdr = Header{Op: OpTrace, ID: 1}
			}
			p.send(hdr, tc.trace)
			if tc.next != nil {
				h, payload := tc.next()
				p.send(h, payload)
			}
			err := p.ended()
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("session ended with %v, want a protocol error saying %q", err, tc.reason)
			}
		})
	}
}

// TestTraceFrameServed: a version 3 peer's OpTrace reaches the serving
// side's interceptors with the request it precedes, a request in chunks
// and a stream open included; the next request, without one, has none.
func TestTraceFrameServed(t *testing.T) {
	reg := new(handlers.Registry)
	if err := reg.RegisterSingle(hTraced, func(_ context.Context, p []byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := reg.RegisterStream(hTraced+1, handlers.StreamHandler{Serve: func(context.Context, []byte, handlers.ServerStream) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	got := make(chan CallInfo, 4)
	cfg := Config{CloseTimeout: 100 * time.Millisecond,
		ServerInterceptors: []ServerInterceptor{func(ctx context.Context, info CallInfo, req []byte, next ServerHandler) ([]byte, error) {
			got <- info
			return next(ctx, info, req)
		}},
		ServerStreamInterceptors: []ServerStreamInterceptor{func(ctx context.Context, info CallInfo, payload []byte, next StreamRunner) error {
			got <- info
			return next(ctx, info, payload)
		}},
	}
	p := newRawPeerConfig(t, reg, 3, cfg)
	expect := func(parent, state string) {
		t.Helper()
		select {
		case info := <-got:
			if info.TraceParent != parent || info.TraceState != state {
				t.Fatalf("served with %q %q, want %q %q", info.TraceParent, info.TraceState, parent, state)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("not served")
		}
	}
	p.send(Header{Op: OpTrace, ID: 1}, traceBin("a=b"))
	p.send(Header{Op: OpRequest, Handler: hTraced, ID: 1}, nil)
	expect(wireParent, "a=b")
	p.send(Header{Op: OpRequest, Handler: hTraced, ID: 2}, nil)
	expect("", "")
	p.send(Header{Op: OpTrace, ID: 3}, traceBin(""))
	p.send(Header{Op: OpRequest, Handler: hTraced, ID: 3, Flags: FlagMore}, make([]byte, MaxFramePayload))
	p.send(Header{Op: OpRequest, ID: 3, Seq: 1}, []byte("tail"))
	expect(wireParent, "")
	p.send(Header{Op: OpTrace, ID: 4}, traceBin(strings.Repeat("s", MaxTraceState-len("s="))+""))
	p.send(Header{Op: OpStreamOpen, Handler: hTraced + 1, ID: 4}, nil)
	expect(wireParent, strings.Repeat("s", MaxTraceState-2))
	if err := p.s.Err(); err != nil {
		t.Fatal(err)
	}
}
