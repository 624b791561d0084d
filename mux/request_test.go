package mux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

func TestRoundTripSizes(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		p := newPair(t, tr, echoRegistry(t), mux.Config{}, mux.Config{})
		for _, n := range []int{0, 17, 64 << 10, 64<<10 + 1, 1 << 20, 16 << 20} {
			want := randomBytes(n)
			got, err := p.client.Request(testCtx(t), hEcho, want)
			if err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%d bytes: echo differs (got %d bytes)", n, len(got))
			}
		}
	})
}

func TestOverMaxRequest(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		// The server accepts at most 1 KiB: the client refuses before sending.
		p := newPair(t, tr, echoRegistry(t), mux.Config{}, mux.Config{MaxMessageSize: 1024})
		_, err := p.client.Request(testCtx(t), hEcho, make([]byte, 1025))
		if !errors.Is(err, mux.ErrMessageTooLarge) {
			t.Fatalf("got %v, want ErrMessageTooLarge", err)
		}
		if _, err := p.client.Request(testCtx(t), hEcho, make([]byte, 1024)); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
	})
}

func TestOverMaxResponse(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := new(handlers.Registry)
		mustRegister(t, reg, hEcho, func(context.Context, []byte) ([]byte, error) { return make([]byte, 2048), nil })
		// The client accepts at most 1 KiB: the server answers with an error.
		p := newPair(t, tr, reg, mux.Config{MaxMessageSize: 1024}, mux.Config{})
		_, err := p.client.Request(testCtx(t), hEcho, nil)
		var re *mux.RemoteError
		if !errors.As(err, &re) || !errors.Is(err, mux.ErrMessageTooLarge) {
			t.Fatalf("got %v, want a RemoteError matching ErrMessageTooLarge", err)
		}
		if p.client.Err() != nil || p.server.Err() != nil {
			t.Fatalf("session ended: %v / %v", p.client.Err(), p.server.Err())
		}
	})
}

func TestRemoteErrorPanicUnknown(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := echoRegistry(t)
		mustRegister(t, reg, hFail, func(context.Context, []byte) ([]byte, error) {
			return nil, errors.New("disk full")
		})
		mustRegister(t, reg, hPanic, func(context.Context, []byte) ([]byte, error) { panic("boom") })
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)

		_, err := p.client.Request(ctx, hFail, nil)
		var re *mux.RemoteError
		if !errors.As(err, &re) || re.Msg != "disk full" || re.Handler != hFail {
			t.Fatalf("handler error: got %#v (%v)", re, err)
		}

		_, err = p.client.Request(ctx, hPanic, nil)
		if !errors.Is(err, mux.ErrHandlerPanic) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("panic: got %v", err)
		}

		_, err = p.client.Request(ctx, hMissing, nil)
		if !errors.Is(err, mux.ErrUnknownHandler) || !strings.Contains(err.Error(), "missing(99)") {
			t.Fatalf("unknown handler: got %v", err)
		}

		// The session survived all three.
		if got, err := p.client.Request(ctx, hEcho, []byte("still here")); err != nil || string(got) != "still here" {
			t.Fatalf("after errors: %q, %v", got, err)
		}
	})
}

func TestInvalidHandlerID(t *testing.T) {
	p := newPair(t, transports[0], echoRegistry(t), mux.Config{}, mux.Config{})
	if _, err := p.client.Request(testCtx(t), 0, nil); !errors.Is(err, mux.ErrInvalidHandler) {
		t.Fatalf("got %v", err)
	}
}

func TestCancelReachesHandler(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		started := make(chan struct{})
		seen := make(chan error, 1)
		reg := new(handlers.Registry)
		mustRegister(t, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
			close(started)
			select {
			case <-ctx.Done():
				seen <- ctx.Err()
			case <-time.After(testTimeout):
				seen <- errors.New("not cancelled")
			}
			return nil, ctx.Err()
		})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := p.client.Request(ctx, hBlock, nil)
			errc <- err
		}()
		waitFor(t, started)
		cancel()
		if err := recv(t, errc); !errors.Is(err, context.Canceled) {
			t.Fatalf("caller: got %v", err)
		}
		select {
		case err := <-seen:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("handler saw %v", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("handler was not cancelled")
		}
		waitIdle(t, p)
	})
}

func TestDeadlineReachesHandler(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		type seen struct {
			deadline time.Time
			ok       bool
			err      error
		}
		got := make(chan seen, 1)
		reg := new(handlers.Registry)
		mustRegister(t, reg, hInspect, func(ctx context.Context, _ []byte) ([]byte, error) {
			d, ok := ctx.Deadline()
			<-ctx.Done()
			got <- seen{d, ok, ctx.Err()}
			return nil, ctx.Err()
		})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		const wait = 300 * time.Millisecond
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, err := p.client.Request(ctx, hInspect, nil)
		// Local expiry or the remote's answer at its deadline: both match.
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("caller: got %v", err)
		}
		s := <-got
		if !s.ok {
			t.Fatal("handler context has no deadline")
		}
		// The deadline travels as remaining milliseconds, so it can only be
		// later than the caller's by the transit time (and rounding).
		if d := s.deadline.Sub(start.Add(wait)); d < -time.Millisecond || d > 2*time.Second {
			t.Fatalf("handler deadline off by %v", d)
		}
		if !errors.Is(s.err, context.DeadlineExceeded) {
			t.Fatalf("handler saw %v, want DeadlineExceeded", s.err)
		}
		waitIdle(t, p)
	})
}

func TestConcurrentRequests(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		p := newPair(t, tr, echoRegistry(t), mux.Config{}, mux.Config{})
		const n = 10000
		ctx := testCtx(t)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				want := fmt.Appendf(nil, "request %d %s", i, strings.Repeat("x", i%300))
				got, err := p.client.Request(ctx, hEcho, want)
				if err == nil && !bytes.Equal(got, want) {
					err = fmt.Errorf("request %d: got %q", i, got)
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if st := p.server.Stats(); st.Served != n {
			t.Fatalf("served %d, want %d", st.Served, n)
		}
	})
}

func TestBothDirections(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		a, b := tr.pair(t)
		regA, regB := echoRegistry(t), echoRegistry(t)
		sa, _ := mux.NewSession(a, regA, mux.Config{})
		sb, _ := mux.NewSession(b, regB, mux.Config{})
		defer sa.Close()
		defer sb.Close()
		ctx := testCtx(t)
		var wg sync.WaitGroup
		for i := range 200 {
			s := sa
			if i%2 == 1 {
				s = sb
			}
			wg.Go(func() {
				msg := fmt.Appendf(nil, "%d", i)
				if got, err := s.Request(ctx, hEcho, msg); err != nil || !bytes.Equal(got, msg) {
					t.Errorf("request %d: %q %v", i, got, err)
				}
			})
		}
		wg.Wait()
	})
}

// waitIdle waits until neither side has requests or handlers left.
func waitIdle(tb testing.TB, p *pair) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		c, s := p.client.Stats(), p.server.Stats()
		if c.InFlight == 0 && s.Running == 0 && s.InFlight == 0 && c.Running == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not idle: client %+v server %+v", c, s)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRequestRecycleAllocs checks the allocations of a round trip whose
// caller recycles the response: one, the handler's context. Without
// Recycle there are two (the response is a second).
func TestRequestRecycleAllocs(t *testing.T) {
	if mux.RaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	p := newPair(t, transports[1], echoRegistry(t), mux.Config{}, mux.Config{})
	ctx := context.Background() // no deadline: a deadline costs a timer per request
	payload := make([]byte, 512)
	call := func() {
		resp, err := p.client.Request(ctx, hEcho, payload)
		if err != nil || len(resp) != len(payload) {
			t.Fatalf("echo: %d bytes, %v", len(resp), err)
		}
		mux.Recycle(resp)
	}
	for range 100 {
		call() // warm the pools and the worker
	}
	if n := testing.AllocsPerRun(500, call); n > 1.2 {
		t.Fatalf("%.2f allocations per recycled round trip, want 1", n)
	}
}

// TestUnanswered: a request counts as unanswered from the moment its
// handler starts until its answer is queued, so a node that waits for 0
// before closing loses no answer.
func TestUnanswered(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	reg := new(handlers.Registry)
	mustRegister(t, reg, hBlock, func(ctx context.Context, p []byte) ([]byte, error) {
		started <- struct{}{}
		<-release
		return p, nil
	})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	done := make(chan error, 1)
	go func() {
		_, err := p.client.Request(testCtx(t), hBlock, []byte("x"))
		done <- err
	}()
	waitFor(t, started)
	if st := p.server.Stats(); st.Unanswered != 1 || st.Running != 1 {
		t.Fatalf("handler running: unanswered %d, running %d; want 1 and 1", st.Unanswered, st.Running)
	}
	close(release)
	if err := recv(t, done); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for p.server.Stats().Unanswered != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("answered, but still counted unanswered: %+v", p.server.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if st := p.server.Stats(); st.Served != 1 {
		t.Fatalf("served %d, want 1", st.Served)
	}
}
