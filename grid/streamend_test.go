package grid

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

func TestStreamCancel(t *testing.T) {
	cases := []struct {
		name  string
		inCap int
		fill  int // input messages sent before cancelling
	}{
		{"no-input", 0, 0},
		{"with-input", 4, 2},
		{"input-full", 4, 4},
	}
	d, a, _ := pair(t, nil)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := handlers.New(uint16(120+i), "grid-cancel-"+tc.name)
			b := newBlocker(1)
			streamHandler(t, id, handlers.StreamHandler{Handle: b.handle, InCapacity: tc.inCap}, a)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := d.m.Connection(a.name).NewStream(ctx, id, nil)
			must(t, err)
			b.waitStarted(t, 1)
			for range tc.fill {
				must(t, st.Send(testCtx(t), []byte("x")))
			}
			if tc.fill == tc.inCap && tc.inCap > 0 {
				sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				if err := st.Send(sctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("send into a full input: %v", err)
				}
				scancel()
			}
			cancel()
			rs := drain(t, st)
			if len(rs) != 1 || !errors.Is(rs[0].Err, context.Canceled) {
				t.Fatalf("after cancel: %+v", rs)
			}
			b.waitEnded(t, 1, context.Canceled)
			noStreamState(t, d, a)
		})
	}
}

func TestStreamDeadline(t *testing.T) {
	d, a, _ := pair(t, nil)
	type seen struct {
		deadline time.Time
		ok       bool
		err      error
	}
	got := make(chan seen, 1)
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, _ chan<- []byte) error {
		dl, ok := ctx.Deadline()
		<-ctx.Done()
		got <- seen{dl, ok, ctx.Err()}
		return ctx.Err()
	}}, a)
	// Long enough for the stream to open, and its handler to start, on
	// a loaded machine: the deadline must pass in the handler.
	const timeout = 500 * time.Millisecond
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := d.m.Connection(a.name).NewStream(ctx, hsBlock, nil)
	must(t, err)
	rs := drain(t, st)
	if len(rs) != 1 || !errors.Is(rs[0].Err, context.DeadlineExceeded) {
		t.Fatalf("caller got %+v", rs)
	}
	s := <-got
	if !s.ok || !errors.Is(s.err, context.DeadlineExceeded) {
		t.Fatalf("handler saw deadline %v (set %v), err %v", s.deadline, s.ok, s.err)
	}
	off := s.deadline.Sub(start.Add(timeout))
	t.Logf("handler's deadline is %v off the caller's", off)
	if off < -time.Millisecond || off > 5*time.Second {
		t.Fatalf("handler's deadline off by %v", off)
	}
	noStreamState(t, d, a)
}

func TestStreamResponseBlockedThenCancel(t *testing.T) {
	d, a, _ := pair(t, nil)
	ended := make(chan error, 1)
	streamHandler(t, hsPush, handlers.StreamHandler{OutCapacity: 2, Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		for {
			select {
			case out <- []byte("more"):
			case <-ctx.Done():
				ended <- ctx.Err()
				return ctx.Err()
			}
		}
	}}, a)
	st, err := d.m.Connection(a.name).NewStream(context.Background(), hsPush, nil)
	must(t, err)
	// The stream flows, then the handler fills its credit and blocks.
	recvResp(t, st)
	time.Sleep(50 * time.Millisecond)
	st.Cancel()
	endsWith(t, "cancelled stream", st, context.Canceled)
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler: %v", err)
	}
	noStreamState(t, d, a)
}

// TestStreamConnectionLoss: when the connection breaks, every open stream
// ends at once with ErrDisconnected on the caller's side, every handler's
// context is cancelled, and new streams work after the reconnect.
func TestStreamConnectionLoss(t *testing.T) {
	d, a, _ := pair(t, nil)
	const n = 10
	ba, bd := newBlocker(n), newBlocker(n)
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: ba.handle, InCapacity: 1}, a)
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: bd.handle, InCapacity: 1}, d)
	streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1}, a)
	ctx := testCtx(t)
	var streams []*mux.Stream
	for i := range 2 * n {
		from, to := d, a
		if i%2 == 1 {
			from, to = a, d
		}
		st, err := from.m.Connection(to.name).NewStream(ctx, hsBlock, nil)
		must(t, err)
		streams = append(streams, st)
	}
	ba.waitStarted(t, n)
	bd.waitStarted(t, n)
	if d.dialer.killAll() == 0 {
		t.Fatal("no connection to kill")
	}
	for i, st := range streams {
		select {
		case r := <-st.Responses:
			if !isDisconnected(r.Err) {
				t.Fatalf("stream %d ended with %+v, want ErrDisconnected", i, r)
			}
		case <-time.After(2 * time.Second): // well below a missed ping
			t.Fatalf("stream %d still open 2 s after the connection broke", i)
		}
		if rest := drain(t, st); len(rest) != 0 {
			t.Fatalf("stream %d: after the error: %+v", i, rest)
		}
		if err := st.Send(ctx, []byte("late")); !errors.Is(err, mux.ErrStreamEnded) {
			t.Fatalf("send on an ended stream: %v", err)
		}
	}
	ba.waitEnded(t, n, context.Canceled)
	bd.waitEnded(t, n, context.Canceled)
	noStreamState(t, d, a)

	waitFor(t, "a new session", func() bool { return d.m.Connection(a.name).Stats().Connects >= 2 })
	must(t, d.m.Connection(a.name).WaitForConnect(ctx))
	st, err := d.m.Connection(a.name).NewStream(ctx, hsEcho, nil)
	must(t, err)
	must(t, st.Send(ctx, []byte("again")))
	if r := recvResp(t, st); string(r.Msg) != "again" {
		t.Fatalf("after reconnect: %+v", r)
	}
	st.CloseSend()
	drain(t, st)
	noStreamState(t, d, a)
}
