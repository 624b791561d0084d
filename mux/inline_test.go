package mux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var (
	hInlineEcho  = handlers.New(180, "inline-echo")
	hInlineBlock = handlers.New(181, "inline-block")
	hInlineBack  = handlers.New(182, "inline-back")
	hInlineSlow  = handlers.New(183, "inline-slow")
)

func mustInline(tb testing.TB, reg *handlers.Registry, id handlers.HandlerID, h handlers.SingleHandler) {
	tb.Helper()
	if err := reg.RegisterInline(id, h); err != nil {
		tb.Fatal(err)
	}
}

// TestInlineServes: requests to an inline handler, from many callers at
// once and with payloads in one frame and in chunks, get their own
// answers, and the stats count them as served inline.
func TestInlineServes(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := new(handlers.Registry)
		mustInline(t, reg, hInlineEcho, func(_ context.Context, p []byte) ([]byte, error) { return p, nil })
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)
		const callers, each = 16, 20
		echoFromCallers(t, callers, each, func(c, i int) error {
			size := 1 + (c*each+i)*37%2000
			if i == 0 && c < 2 {
				size = 3*mux.MaxFramePayload + 5 // in chunks
			}
			return echoOnce(ctx, p.client, hInlineEcho, randomBytes(size))
		})
		st := p.server.Stats()
		if st.Served != callers*each || st.ServedInline != callers*each {
			t.Fatalf("served %d, inline %d; want %d of each", st.Served, st.ServedInline, callers*each)
		}
	})
}

// TestInlineHandoff: an inline handler that blocks does not hold up the
// connection past the budget: another request is answered while it is
// still blocked, and the blocked one is answered when it returns.
func TestInlineHandoff(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		release, entered := make(chan struct{}), make(chan struct{})
		reg := new(handlers.Registry)
		mustInline(t, reg, hInlineEcho, func(_ context.Context, p []byte) ([]byte, error) { return p, nil })
		mustInline(t, reg, hInlineBlock, func(context.Context, []byte) ([]byte, error) {
			close(entered)
			<-release // ignores its context: only the test ends it
			return []byte("released"), nil
		})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{InlineBudget: time.Millisecond})
		ctx := testCtx(t)
		blocked := make(chan error, 1)
		go func() {
			resp, err := p.client.Request(ctx, hInlineBlock, nil)
			if err == nil && string(resp) != "released" {
				err = fmt.Errorf("answer %q", resp)
			}
			blocked <- err
		}()
		waitFor(t, entered)
		// The reader is in the blocked handler: this answer can come only
		// from a reader that took over.
		if got, err := p.client.Request(ctx, hInlineEcho, []byte("past it")); err != nil || string(got) != "past it" {
			t.Fatalf("request behind a blocked inline handler: %q, %v", got, err)
		}
		// The echo may overrun its budget too on a busy machine.
		if st := p.server.Stats(); st.InlineHandoffs < 1 || st.Running != 1 {
			t.Fatalf("handoffs %d, running %d; want at least 1, and 1", st.InlineHandoffs, st.Running)
		}
		close(release)
		if err := recv(t, blocked); err != nil {
			t.Fatalf("the blocked request: %v", err)
		}
	})
}

// TestInlineCallsBack: an inline handler that calls its own peer back over
// the same session, and waits for the answer only the reader can read,
// gets it: the reading moves on past the budget.
func TestInlineCallsBack(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		a, b := tr.pair(t)
		clientReg := echoRegistry(t)
		client, err := mux.NewSession(a, clientReg, mux.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var server *mux.Session
		ready := make(chan struct{})
		reg := new(handlers.Registry)
		mustInline(t, reg, hInlineBack, func(ctx context.Context, p []byte) ([]byte, error) {
			<-ready
			back, err := server.Request(ctx, hEcho, p)
			if err != nil {
				return nil, err
			}
			return append([]byte("back: "), back...), nil
		})
		server, err = mux.NewSession(b, reg, mux.Config{})
		if err != nil {
			t.Fatal(err)
		}
		close(ready)
		t.Cleanup(func() {
			client.Close()
			server.Close()
		})
		got, err := client.Request(testCtx(t), hInlineBack, []byte("ping"))
		if err != nil || string(got) != "back: ping" {
			t.Fatalf("got %q, %v", got, err)
		}
		if st := server.Stats(); st.InlineHandoffs != 1 {
			t.Fatalf("%d handoffs, want 1", st.InlineHandoffs)
		}
	})
}

// TestInlineCancelAfterHandoff: once the reading has moved, the caller's
// cancel reaches an inline handler that waits on its context.
func TestInlineCancelAfterHandoff(t *testing.T) {
	entered := make(chan struct{})
	sawCancel := make(chan error, 1)
	reg := new(handlers.Registry)
	mustInline(t, reg, hInlineBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
		close(entered)
		select {
		case <-ctx.Done():
			sawCancel <- ctx.Err()
		case <-time.After(testTimeout):
			sawCancel <- errors.New("no cancel within the test timeout")
		}
		return nil, ctx.Err()
	})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{InlineBudget: time.Millisecond})
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		_, err := p.client.Request(ctx, hInlineBlock, nil)
		done <- err
	}()
	waitFor(t, entered)
	cancel()
	if err := recv(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("caller: %v, want context.Canceled", err)
	}
	if err := recv(t, sawCancel); !errors.Is(err, context.Canceled) {
		t.Fatalf("handler: %v, want context.Canceled", err)
	}
}

// TestInlineAbandon: a session whose reader is in an inline handler that
// ignores its context is abandoned without waiting for it, or for the
// budget (an hour here); Close then waits for it, and the handler shows
// as orphaned meanwhile.
func TestInlineAbandon(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	reg := new(handlers.Registry)
	mustInline(t, reg, hInlineBlock, func(context.Context, []byte) ([]byte, error) {
		close(entered)
		<-release
		return nil, nil
	})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{InlineBudget: time.Hour})
	go func() { _, _ = p.client.Request(context.Background(), hInlineBlock, nil) }()
	waitFor(t, entered)
	abandoned := make(chan struct{})
	go func() {
		p.server.Abandon()
		close(abandoned)
	}()
	waitFor(t, abandoned)
	if st := p.server.Stats(); st.OrphanedHandlers != 1 {
		t.Fatalf("orphaned %d, want 1", st.OrphanedHandlers)
	}
	closed := make(chan struct{})
	go func() {
		p.server.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while an inline handler still ran")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	waitFor(t, closed)
}

// TestInlineHandoffStorm: with a budget of 1 ns, the reading changes hands
// over and over while 32 callers keep requests in flight, some of whose
// handlers sleep and some of which arrive in chunks; every caller gets its
// own answer, every request is served exactly once, and the observer (which
// makes the reader stamp arrivals) sees each begin and end once.
func TestInlineHandoffStorm(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		var calls atomic.Int64
		reg := new(handlers.Registry)
		mustInline(t, reg, hInlineSlow, func(_ context.Context, p []byte) ([]byte, error) {
			if calls.Add(1)%4 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
			return p, nil
		})
		obs := new(countingObserver)
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{InlineBudget: time.Nanosecond, Observer: obs})
		ctx := testCtx(t)
		const callers, each = 32, 40
		echoFromCallers(t, callers, each, func(c, i int) error {
			want := fmt.Appendf(nil, "caller %d call %d", c, i)
			if i%10 == 3 && c%8 == 0 {
				want = append(want, randomBytes(mux.MaxFramePayload+100)...) // in chunks
			}
			return echoOnce(ctx, p.client, hInlineSlow, want)
		})
		st := p.server.Stats()
		if calls.Load() != callers*each || st.Served != callers*each || st.ServedInline != callers*each {
			t.Fatalf("handler ran %d times, served %d, inline %d; want %d", calls.Load(), st.Served, st.ServedInline, callers*each)
		}
		if st.InlineHandoffs == 0 {
			t.Fatal("no handoff with a 1 ns budget and sleeping handlers")
		}
		if b, d := obs.begun.Load(), obs.done.Load(); b != callers*each || d != callers*each {
			t.Fatalf("observer: %d begun, %d done; want %d", b, d, callers*each)
		}
		t.Logf("%d handoffs for %d requests", st.InlineHandoffs, st.ServedInline)
	})
}

// TestInlineGoexit: an inline handler that ends its goroutine with
// runtime.Goexit (as t.Fatal in a handler does) loses its own answer but
// not the session: the next request is answered, and Close returns.
func TestInlineGoexit(t *testing.T) {
	reg := new(handlers.Registry)
	mustInline(t, reg, hInlineEcho, func(_ context.Context, p []byte) ([]byte, error) {
		if string(p) == "exit" {
			runtime.Goexit()
		}
		return p, nil
	})
	a, b := tcpPair(t)
	client, err := mux.NewSession(a, nil, mux.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := mux.NewSession(b, reg, mux.Config{InlineBudget: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	if _, err := client.Request(ctx, hInlineEcho, []byte("exit")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the exited handler's request: %v, want a deadline error", err)
	}
	if got, err := client.Request(testCtx(t), hInlineEcho, []byte("next")); err != nil || string(got) != "next" {
		t.Fatalf("the next request: %q, %v", got, err)
	}
	if st := server.Stats(); st.InlineHandoffs != 1 {
		t.Fatalf("%d handoffs, want 1", st.InlineHandoffs)
	}
	closed := make(chan struct{})
	go func() {
		server.Close()
		close(closed)
	}()
	waitFor(t, closed)
}

// countingObserver counts the served requests it is told of.
type countingObserver struct{ begun, done atomic.Int64 }

func (o *countingObserver) RequestBegun(_ handlers.HandlerID, serving bool) {
	if serving {
		o.begun.Add(1)
	}
}

func (o *countingObserver) RequestDone(_ handlers.HandlerID, serving bool, _ time.Duration, _ error) {
	if serving {
		o.done.Add(1)
	}
}

// echoFromCallers runs call(c, i) for each of each calls of callers
// concurrent callers, and fails t on the first error.
func echoFromCallers(t *testing.T, callers, each int, call func(c, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				if err := call(c, i); err != nil {
					errs <- fmt.Errorf("caller %d call %d: %w", c, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// echoOnce sends want to an echoing handler h and checks the answer.
func echoOnce(ctx context.Context, s *mux.Session, h handlers.HandlerID, want []byte) error {
	got, err := s.Request(ctx, h, want)
	if err == nil && !bytes.Equal(got, want) {
		err = fmt.Errorf("%d bytes back for %d sent, or other bytes", len(got), len(want))
	}
	return err
}
