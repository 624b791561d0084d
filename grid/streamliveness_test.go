package grid

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/blackhole"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

// onDirs drops the data of the given directions ("upstream": dialer to
// acceptor, "downstream": acceptor to dialer) from now on.
func (b *holeProxy) onDirs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		switch dir {
		case "upstream":
			b.p.Drop(blackhole.Upstream)
		case "downstream":
			b.p.Drop(blackhole.Downstream)
		default:
			t.Fatalf("unknown direction %q", dir)
		}
	}
}

// liveHandlers are stream handlers that stay blocked and report how their
// context ended: push blocks on a caller that does not read, work on a
// long computation.
type liveHandlers struct{ ended chan error }

func (l *liveHandlers) push(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
	for i := 0; ; i++ {
		select {
		case out <- fmt.Appendf(nil, "%d", i):
		case <-ctx.Done():
			l.ended <- ctx.Err()
			return ctx.Err()
		}
	}
}

func (l *liveHandlers) work(ctx context.Context, _ []byte, _ <-chan []byte, _ chan<- []byte) error {
	<-ctx.Done() // computing, for as long as it takes
	l.ended <- ctx.Err()
	return ctx.Err()
}

// TestStreamLiveness: over a short ping interval, streams that are merely
// blocked (a caller that does not read, a handler computing for a long
// time) stay up for many ping intervals; once the peer vanishes (a
// blackhole that keeps the TCP connection open, both ways or one way),
// every stream is torn down on both sides within about PingInterval +
// PingTimeout, and no state is left.
func TestStreamLiveness(t *testing.T) {
	modes := []struct {
		name string
		dirs []string
	}{
		{"two-way", []string{"upstream", "downstream"}},
		{"one-way-to-acceptor", []string{"upstream"}},
		{"one-way-to-dialer", []string{"downstream"}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) { livenessTrial(t, mode.dirs) })
	}
}

func livenessTrial(t *testing.T, dirs []string) {
	// A generous timeout: a pong delayed by a busy machine must not be
	// taken for a vanished peer. Blocked streams stay up for 12 pings.
	const interval, timeout = 200 * time.Millisecond, 3 * time.Second
	const alive = 12 * interval
	d, a, hole := blackholedPair(t, func(_ bool, o *Options) {
		o.PingInterval, o.PingTimeout = interval, timeout
		o.HandshakeTimeout = 2 * time.Second
	})
	nodes := []*node{d, a}
	lives := make([]*liveHandlers, 2)
	for i, n := range nodes {
		lives[i] = &liveHandlers{ended: make(chan error, 4)}
		streamHandler(t, hsPush, handlers.StreamHandler{Handle: lives[i].push, OutCapacity: 1}, n)
		streamHandler(t, hsWork, handlers.StreamHandler{Handle: lives[i].work}, n)
		streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1}, n)
	}
	ctx := testCtx(t)

	// Both ways: a stream whose caller stops reading, and one whose handler
	// computes without sending.
	type open struct {
		what string
		st   *mux.Stream
	}
	var streams []open
	for _, ends := range [][2]*node{{d, a}, {a, d}} {
		c := ends[0].m.Connection(ends[1].name)
		push, err := c.NewStream(ctx, hsPush, nil)
		must(t, err)
		recvResp(t, push)
		work, err := c.NewStream(ctx, hsWork, nil)
		must(t, err)
		streams = append(streams, open{ends[0].name + " push", push}, open{ends[0].name + " work", work})
	}
	time.Sleep(alive)
	for _, o := range streams {
		select {
		case <-o.st.Done():
			t.Fatalf("%s: a blocked stream ended while its peer was alive", o.what)
		default:
		}
	}
	for i, l := range lives {
		select {
		case err := <-l.ended:
			t.Fatalf("%s: a handler's context ended while its peer was alive: %v", nodes[i].name, err)
		default:
		}
	}
	for _, n := range nodes {
		if st := n.m.Stats(); st.Reconnects != 0 || st.StreamsOut != 2 || st.StreamsIn != 2 {
			t.Fatalf("%s after %v blocked: reconnects %d, streams out %d in %d", n.name, alive, st.Reconnects, st.StreamsOut, st.StreamsIn)
		}
	}
	for _, o := range streams[:1] {
		if r := recvResp(t, o.st); r.Err != nil {
			t.Fatalf("%s: the blocked stream does not flow again: %v", o.what, r.Err)
		}
	}

	hole.onDirs(t, dirs...)
	start := time.Now()
	var worst time.Duration
	for _, o := range streams {
		endsWith(t, o.what, o.st, ErrDisconnected)
		worst = max(worst, time.Since(start))
	}
	for i, l := range lives {
		for range 2 {
			select {
			case err := <-l.ended:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("%s: handler's context ended with %v", nodes[i].name, err)
				}
			case <-time.After(testTimeout):
				t.Fatalf("%s: handler's context not cancelled after the peer vanished", nodes[i].name)
			}
		}
	}
	handlersEnded := time.Since(start)
	t.Logf("blackhole %v: callers' streams ended after %v, handlers' contexts by %v (ping %v + %v)", dirs, worst, handlersEnded, interval, timeout)
	if limit := interval + timeout + 5*time.Second; handlersEnded > limit {
		t.Errorf("tearing the streams down took %v, want at most %v", handlersEnded, limit)
	}
	noStreamState(t, d, a)

	hole.direct.Store(true)
	for _, n := range nodes {
		must(t, n.m.WaitForConnect(ctx))
	}
	waitFor(t, "a stream after the blackhole", func() bool {
		st, err := d.m.Connection(a.name).NewStream(ctx, hsEcho, nil)
		if err != nil {
			return false
		}
		defer func() { st.CloseSend(); drainQuiet(st) }()
		if st.Send(ctx, []byte("back")) != nil {
			return false
		}
		r := <-st.Responses
		return string(r.Msg) == "back"
	})
	noStreamState(t, d, a)
	for _, n := range nodes {
		n.stop()
	}
}
