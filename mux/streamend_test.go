package mux_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
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
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				bh := newBlocking()
				reg := new(handlers.Registry)
				mustStream(t, reg, hsBlock, handlers.StreamHandler{Handle: bh.handle, InCapacity: c.inCap})
				p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
				ctx, cancel := context.WithCancel(context.Background())
				st, err := p.client.NewStream(ctx, hsBlock, nil)
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, bh.started)
				for range c.fill {
					if err := st.Send(testCtx(t), []byte("x")); err != nil {
						t.Fatal(err)
					}
				}
				if c.fill == c.inCap && c.inCap > 0 {
					// The input is full: one more send must wait.
					sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
					if err := st.Send(sctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("send into full input: %v", err)
					}
					scancel()
				}
				cancel()
				rs := waitClosed(t, st)
				if len(rs) != 1 || !errors.Is(rs[0].Err, context.Canceled) {
					t.Fatalf("last responses %+v", rs)
				}
				select {
				case err := <-bh.ended:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("handler saw %v", err)
					}
				case <-time.After(testTimeout):
					t.Fatal("handler not cancelled")
				}
				waitNoStreams(t, p)
			})
		}
	})
}

func TestStreamDeadline(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		type seen struct {
			d   time.Time
			ok  bool
			err error
		}
		got := make(chan seen, 1)
		reg := new(handlers.Registry)
		mustStream(t, reg, hsInspect, handlers.StreamHandler{Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, _ chan<- []byte) error {
			d, ok := ctx.Deadline()
			<-ctx.Done()
			got <- seen{d, ok, ctx.Err()}
			return ctx.Err()
		}})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		// Long enough for the stream to open, and its handler to start, on
		// a loaded machine: the deadline must pass in the handler.
		const timeout = 500 * time.Millisecond
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		st, err := p.client.NewStream(ctx, hsInspect, nil)
		if err != nil {
			t.Fatal(err)
		}
		rs := waitClosed(t, st)
		if len(rs) != 1 || !errors.Is(rs[0].Err, context.DeadlineExceeded) {
			t.Fatalf("caller got %+v", rs)
		}
		s := <-got
		if !s.ok || !errors.Is(s.err, context.DeadlineExceeded) {
			t.Fatalf("handler: %+v", s)
		}
		if off := s.d.Sub(start.Add(timeout)); off < -time.Millisecond || off > 2*time.Second {
			t.Fatalf("handler deadline off by %v", off)
		}
		waitNoStreams(t, p)
	})
}

func TestStreamResponseBlockedThenCancel(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ended := make(chan error, 1)
		reg := new(handlers.Registry)
		mustStream(t, reg, hsPush, handlers.StreamHandler{OutCapacity: 2, Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
			for {
				select {
				case out <- []byte("more"):
				case <-ctx.Done():
					ended <- ctx.Err()
					return ctx.Err()
				}
			}
		}})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		st, err := p.client.NewStream(context.Background(), hsPush, nil)
		if err != nil {
			t.Fatal(err)
		}
		recvNext(t, st) // flowing, then blocked on credit
		time.Sleep(20 * time.Millisecond)
		st.Cancel()
		rs := waitClosed(t, st)
		if last := rs[len(rs)-1]; !errors.Is(last.Err, context.Canceled) {
			t.Fatalf("last %+v", last)
		}
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("handler %v", err)
		}
		waitNoStreams(t, p)
	})
}

func TestStreamDisconnect(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		bh := newBlocking()
		reg := new(handlers.Registry)
		mustStream(t, reg, hsBlock, handlers.StreamHandler{Handle: bh.handle, InCapacity: 1})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		st, err := p.client.NewStream(context.Background(), hsBlock, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, bh.started)
		p.clientConn.Close()
		rs := waitClosed(t, st)
		if len(rs) != 1 || !errors.Is(rs[0].Err, mux.ErrDisconnected) {
			t.Fatalf("got %+v", rs)
		}
		if err := <-bh.ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("handler %v", err)
		}
		if err := st.Send(testCtx(t), []byte("late")); !errors.Is(err, mux.ErrStreamEnded) {
			t.Fatalf("send after end: %v", err)
		}
		waitNoStreams(t, p) // an ended session reports no streams
	})
}

// TestStreamCancelEndsInput: a handler that ranges over its input without
// watching its context still returns when the caller cancels.
func TestStreamCancelEndsInput(t *testing.T) {
	ended := make(chan struct{})
	reg := new(handlers.Registry)
	mustStream(t, reg, hsEcho, handlers.StreamHandler{InCapacity: 2, Handle: func(_ context.Context, _ []byte, in <-chan []byte, _ chan<- []byte) error {
		for range in {
		}
		close(ended)
		return nil
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	raw, err := p.client.OpenStream(testCtx(t), hsEcho, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Send(testCtx(t), []byte("x")); err != nil {
		t.Fatal(err)
	}
	raw.Cancel()
	if _, err := raw.Recv(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after Cancel: %v", err)
	}
	waitFor(t, ended)
	waitNoStreams(t, p)
}

// TestStreamAbandonedOpen: a caller whose context ends while its stream is
// opening gets the context's error, and the stream's later accept and end
// leave nothing behind: no goroutine waits to deliver into the Responses
// of a stream nobody has.
func TestStreamAbandonedOpen(t *testing.T) {
	bh := newBlockingN(100)
	reg := new(handlers.Registry)
	mustStream(t, reg, hsBlock, handlers.StreamHandler{Handle: bh.handle})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	waitFor(t, p.client.Ready())
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := p.client.NewStream(ctx, hsBlock, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("open with a cancelled context: %v", err)
		}
	}
	waitNoStreams(t, p)
	deadline := time.Now().Add(testTimeout)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		n := strings.Count(stacks, "(*cstream).forward(")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d forwarders of abandoned streams still running:\n%s", n, stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
