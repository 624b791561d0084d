package mux_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// TestStreamCancelNotReading: a caller that stopped reading its stream's
// Responses cancels it (Stream.Cancel, or its context ends). The messages
// it did not take are dropped and recycled at once, none is delivered
// afterwards, Done and Responses close promptly although the caller never
// reads (as callers that wait on Done do), and no goroutine is left for
// the stream. Every output capacity is tried: 1 (Responses unbuffered,
// the message in hand of a forwarder blocked on it), 2 and 8 (messages
// in Responses and in the overflow queue behind it).
func TestStreamCancelNotReading(t *testing.T) {
	for _, outCap := range []int{1, 2, 8} {
		for _, how := range []string{"Cancel", "context"} {
			for _, open := range []string{"NewStream", "OpenStream"} {
				name := how + "/" + open + "/out" + string(rune('0'+outCap))
				t.Run(name, func(t *testing.T) { testStreamCancelNotReading(t, outCap, how == "context", open == "NewStream") })
			}
		}
	}
}

func testStreamCancelNotReading(t *testing.T, outCap int, viaCtx, withChan bool) {
	var sent atomic.Int64
	reg := new(handlers.Registry)
	mustStream(t, reg, hsPush, handlers.StreamHandler{InCapacity: 1, OutCapacity: outCap, Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		for {
			select {
			case out <- make([]byte, 4<<10):
				sent.Add(1)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	waitFor(t, p.client.Ready())
	waitSettled(t, p.client) // the hello is counted
	before := p.client.Stats().FramesIn
	var st *mux.Stream
	if withChan {
		var err error
		if st, err = p.client.NewStream(ctx, hsPush, nil); err != nil {
			t.Fatal(err)
		}
	} else {
		raw, err := p.client.OpenStream(ctx, hsPush, nil)
		if err != nil {
			t.Fatal(err)
		}
		st = raw.(*mux.Stream)
	}
	// The caller reads nothing: the handler fills the caller's window
	// (outCap messages, a frame each, after the accept) and then waits
	// for credit with one more in hand.
	waitUntil(t, "the window filled", func() bool { return p.client.Stats().FramesIn >= before+1+uint64(outCap) })

	var dropped atomic.Int64
	defer mux.SetDropHook(func(n int) { dropped.Add(int64(n)) })()
	start := time.Now()
	if viaCtx {
		cancel()
	} else {
		st.Cancel()
	}
	select {
	case <-st.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed 5 s after the cancel of a stream nobody reads")
	}
	took := time.Since(start)
	// Nothing but the cancellation's error may come now (it may be
	// missing when Responses is unbuffered: Recv returns it then).
	rs := waitClosed(t, st)
	for _, r := range rs {
		if r.Err == nil {
			t.Fatalf("a message was delivered after the cancel: %d bytes (of %d responses)", len(r.Msg), len(rs))
		}
		if !errors.Is(r.Err, context.Canceled) {
			t.Fatalf("last response %v, want context.Canceled", r.Err)
		}
	}
	if outCap > 1 && len(rs) != 1 {
		t.Fatalf("%d responses after the cancel, want the error alone", len(rs))
	}
	if _, err := st.Recv(); len(rs) == 0 && !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after the cancel: %v, want context.Canceled", err)
	}
	if got := dropped.Load(); got != int64(outCap) {
		t.Errorf("%d messages dropped and recycled, want the %d not taken", got, outCap)
	}
	t.Logf("Done closed %v after the cancel; %d messages dropped", took, dropped.Load())
	waitNoGoroutine(t, "(*cstream).forward(", "(*cstream).forwardRequests(")
	waitNoStreams(t, p)
}

// waitStable waits until n is at least min and has not changed for 50 ms.
func waitStable(tb testing.TB, n *atomic.Int64, least int64) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	last, since := n.Load(), time.Now()
	for {
		time.Sleep(5 * time.Millisecond)
		v := n.Load()
		if v != last {
			last, since = v, time.Now()
		}
		if v >= least && time.Since(since) >= 50*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("counter at %d, want at least %d and stable", v, least)
		}
	}
}

// waitNoGoroutine waits until no goroutine's stack contains any of fns.
func waitNoGoroutine(tb testing.TB, fns ...string) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		left := ""
		for _, fn := range fns {
			if strings.Contains(stacks, fn) {
				left = fn
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("a goroutine in %s is still running:\n%s", left, stacks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
