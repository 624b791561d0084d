package mux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

// Tests of stream handlers in the Serve form (handlers.ServerStream).

func TestServeRoundTrip(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, window := range []int{1, 2, 16} {
			t.Run(fmt.Sprint("window=", window), func(t *testing.T) {
				reg := new(handlers.Registry)
				mustStream(t, reg, hsEcho, handlers.StreamHandler{Serve: streamtest.ServeEcho, InCapacity: window, OutCapacity: window})
				p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
				ctx := testCtx(t)
				raw, err := p.client.OpenStream(ctx, hsEcho, nil)
				if err != nil {
					t.Fatal(err)
				}
				st := raw.(*mux.Stream)
				// Sender and receiver on two goroutines, with more
				// messages than the window, so credit must flow back both
				// ways.
				const n = 200
				sent := make(chan error, 1)
				go func() {
					for i := range n {
						if err := st.Send(ctx, fmt.Appendf(nil, "message %d", i)); err != nil {
							sent <- err
							return
						}
					}
					st.CloseSend()
					sent <- nil
				}()
				for i := range n {
					msg, err := st.Recv()
					if err != nil || string(msg) != fmt.Sprintf("message %d", i) {
						t.Fatalf("message %d: %q %v", i, msg, err)
					}
				}
				if _, err := st.Recv(); err != io.EOF {
					t.Fatalf("after the last echo: %v, want io.EOF", err)
				}
				if err := <-sent; err != nil {
					t.Fatal(err)
				}
				waitNoStreams(t, p)
			})
		}
	})
}

// TestServeSendRecvConcurrently: a handler that sends from one goroutine
// while it receives on another.
func TestServeSendRecvConcurrently(t *testing.T) {
	reg := new(handlers.Registry)
	mustStream(t, reg, hsEcho, handlers.StreamHandler{InCapacity: 2, OutCapacity: 2, Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
		msgs := make(chan []byte, 1)
		var wg sync.WaitGroup
		var sendErr error
		wg.Go(func() {
			for m := range msgs {
				if sendErr = st.Send(ctx, bytes.ToUpper(m)); sendErr != nil {
					for range msgs {
					}
					return
				}
			}
		})
		var err error
		for {
			var m []byte
			if m, err = st.Recv(ctx); err != nil {
				break
			}
			msgs <- m
		}
		close(msgs)
		wg.Wait()
		if err == io.EOF {
			err = sendErr
		}
		return err
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	ctx := testCtx(t)
	st, err := p.client.NewStream(ctx, hsEcho, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range 100 {
			st.Requests <- fmt.Appendf(nil, "m%d", i)
		}
		close(st.Requests)
	}()
	i := 0
	if err := st.Results(func(m []byte) error {
		if want := fmt.Sprintf("M%d", i); string(m) != want {
			return fmt.Errorf("got %q, want %q", m, want)
		}
		i++
		return nil
	}); err != nil || i != 100 {
		t.Fatalf("%d messages, %v", i, err)
	}
	waitNoStreams(t, p)
}

func TestServeNoInputAndHandlerError(t *testing.T) {
	reg := new(handlers.Registry)
	mustStream(t, reg, hsPush, handlers.StreamHandler{OutCapacity: 2, Serve: func(ctx context.Context, p []byte, st handlers.ServerStream) error {
		if _, err := st.Recv(ctx); err != io.EOF {
			return fmt.Errorf("Recv without input: %v, want io.EOF", err)
		}
		for i := range 5 {
			if err := st.Send(ctx, fmt.Appendf(nil, "%s %d", p, i)); err != nil {
				return err
			}
		}
		return nil
	}})
	mustStream(t, reg, hsFail, handlers.StreamHandler{Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
		if err := st.Send(ctx, []byte("partial")); err != nil {
			return err
		}
		return errors.New("gave up")
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	checkPushAndFail(t, p)
	waitNoStreams(t, p)
}

// TestServeEnds: a handler blocked in Recv, or in Send for want of credit,
// returns when the caller cancels, when the deadline passes, when the
// session closes, and when a context of its own ends.
func TestServeEnds(t *testing.T) {
	for _, blockIn := range []string{"recv", "send"} {
		for _, how := range []string{"cancel", "deadline", "close", "own-context"} {
			t.Run(blockIn+"/"+how, func(t *testing.T) {
				testServeEnds(t, blockIn == "send", how)
			})
		}
	}
}

func testServeEnds(t *testing.T, inSend bool, how string) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	reg := new(handlers.Registry)
	mustStream(t, reg, hsBlock, handlers.StreamHandler{InCapacity: 1, OutCapacity: 1, Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
		wctx := ctx
		if how == "own-context" {
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
		}
		started <- struct{}{}
		var err error
		if inSend {
			// The first message takes the only credit; the second waits,
			// since the caller does not read.
			if err = st.Send(wctx, []byte("1")); err == nil {
				err = st.Send(wctx, []byte("2"))
			}
		} else {
			_, err = st.Recv(wctx)
		}
		ended <- err
		return err
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	if how == "deadline" {
		// Long enough for the stream to open and its handler to start
		// on a loaded machine; it passes while the handler is blocked.
		ctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
	}
	st, err := p.client.NewStream(ctx, hsBlock, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, started)
	want := context.Canceled
	switch how {
	case "cancel":
		time.Sleep(10 * time.Millisecond) // let the handler block
		cancel()
	case "deadline", "own-context":
		want = context.DeadlineExceeded
	case "close":
		time.Sleep(10 * time.Millisecond)
		// Close waits (up to CloseTimeout) for the caller to take the
		// stream's final Response, which waitClosed does below.
		go p.client.Close()
	}
	select {
	case err := <-ended:
		if !errors.Is(err, want) {
			t.Fatalf("handler's call returned %v, want %v", err, want)
		}
	case <-time.After(testTimeout):
		t.Fatal("handler still blocked")
	}
	// The caller's side ends too, with the handler's error where the
	// caller did not end it itself.
	rs := waitClosed(t, st)
	if how == "own-context" {
		if len(rs) == 0 || !errors.Is(rs[len(rs)-1].Err, context.DeadlineExceeded) {
			t.Fatalf("stream ended with %+v, want the handler's deadline error", rs)
		}
	}
	if how != "close" {
		waitNoStreams(t, p)
	}
}

// TestStreamOutTooLarge: a message larger than the caller accepts ends the
// stream with ErrMessageTooLarge, in both handler forms; in the Serve form
// Send reports it too.
func TestStreamOutTooLarge(t *testing.T) {
	sendErr := make(chan error, 1)
	reg := new(handlers.Registry)
	mustStream(t, reg, hsBig, handlers.StreamHandler{Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
		if err := st.Send(ctx, []byte("small")); err != nil {
			return err
		}
		err := st.Send(ctx, make([]byte, 2048))
		sendErr <- err
		return err
	}})
	mustStream(t, reg, hsPush, handlers.StreamHandler{Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		for _, m := range [][]byte{[]byte("small"), make([]byte, 2048)} {
			select {
			case out <- m:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		<-ctx.Done()
		return ctx.Err()
	}})
	p := newPair(t, transports[1], reg, mux.Config{MaxMessageSize: 1024}, mux.Config{})
	ctx := testCtx(t)
	for _, h := range []handlers.HandlerID{hsBig, hsPush} {
		st, err := p.client.NewStream(ctx, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		rs := waitClosed(t, st)
		var re *mux.RemoteError
		if len(rs) != 2 || string(rs[0].Msg) != "small" || !errors.As(rs[1].Err, &re) || !errors.Is(rs[1].Err, mux.ErrMessageTooLarge) {
			t.Fatalf("%v: got %+v, want the small message, then a remote ErrMessageTooLarge", h, rs)
		}
	}
	if err := <-sendErr; !errors.Is(err, mux.ErrMessageTooLarge) {
		t.Fatalf("Send of a message too large: %v", err)
	}
	waitNoStreams(t, p)
}

func TestServeBigMessages(t *testing.T) {
	reg := new(handlers.Registry)
	mustStream(t, reg, hsEcho, handlers.StreamHandler{Serve: streamtest.ServeEcho, InCapacity: 2, OutCapacity: 2})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	ctx := testCtx(t)
	raw, err := p.client.OpenStream(ctx, hsEcho, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{mux.MaxFramePayload + 1, 1 << 20, 3<<20 + 7} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		if err := raw.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		got, err := raw.Recv()
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: got %d, %v", n, len(got), err)
		}
	}
	raw.CloseSend()
	if _, err := raw.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	waitNoStreams(t, p)
}

func TestServePanic(t *testing.T) {
	reg := new(handlers.Registry)
	mustStream(t, reg, hsFail, handlers.StreamHandler{Serve: func(context.Context, []byte, handlers.ServerStream) error {
		panic("boom")
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	st, err := p.client.NewStream(testCtx(t), hsFail, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := waitClosed(t, st)
	if len(rs) != 1 || !errors.Is(rs[0].Err, mux.ErrHandlerPanic) || !strings.Contains(rs[0].Err.Error(), "boom") {
		t.Fatalf("got %+v", rs)
	}
	waitNoStreams(t, p)
}

// TestServeGoroutines: an open stream in the Serve form costs the serving
// side one goroutine, the handler's.
func TestServeGoroutines(t *testing.T) {
	reg := new(handlers.Registry)
	mustStream(t, reg, hsEcho, handlers.StreamHandler{Serve: streamtest.ServeEcho, InCapacity: 4, OutCapacity: 4})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	const n = 50
	for range n {
		raw, err := p.client.OpenStream(ctx, hsEcho, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Send(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if handlers, pumps := strings.Count(stacks, "streamtest.ServeEcho("), strings.Count(stacks, "pumpStream("); handlers != n || pumps != 0 {
		t.Fatalf("%d open streams: %d handler goroutines, %d pumps; want %d and 0", n, handlers, pumps, n)
	}
	cancel()
	waitNoStreams(t, p)
}

// TestServeConcurrentSends: several goroutines of one handler send at once
// through a small window; every message arrives, each sender's in order.
func TestServeConcurrentSends(t *testing.T) {
	const senders, each = 4, 100
	reg := new(handlers.Registry)
	mustStream(t, reg, hsPush, handlers.StreamHandler{OutCapacity: 3, Serve: concurrentSends(senders, each, func(g, i int) []byte {
		return fmt.Appendf(nil, "%d %d", g, i)
	})})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	st, err := p.client.NewStream(testCtx(t), hsPush, nil)
	if err != nil {
		t.Fatal(err)
	}
	next := make([]int, senders)
	if err := st.Results(func(m []byte) error {
		var g, i int
		if _, err := fmt.Sscanf(string(m), "%d %d", &g, &i); err != nil || g < 0 || g >= senders || i != next[g] {
			return fmt.Errorf("message %q out of order (next from sender %d: %d)", m, g, next[min(max(g, 0), senders-1)])
		}
		next[g]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for g, n := range next {
		if n != each {
			t.Fatalf("sender %d: %d messages, want %d", g, n, each)
		}
	}
	waitNoStreams(t, p)
}

// TestServeLeftBehind: a goroutine that a Serve handler left blocked in
// Send or Recv, with a context of its own, returns once the handler has
// returned and the stream is over.
func TestServeLeftBehind(t *testing.T) {
	errs := make(chan error, 2)
	reg := new(handlers.Registry)
	mustStream(t, reg, hsPush, handlers.StreamHandler{InCapacity: 1, OutCapacity: 1, Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
		if err := st.Send(ctx, []byte("1")); err != nil { // the only credit
			return err
		}
		go func() { errs <- st.Send(context.Background(), []byte("2")) }()
		go func() {
			_, err := st.Recv(context.Background())
			errs <- err
		}()
		time.Sleep(20 * time.Millisecond) // let both block before the handler returns
		return nil
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	// Nothing reads the stream until the two calls returned, so no credit
	// comes back to wake the Send; and the stream has no deadline, whose
	// timer would wake both.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := p.client.OpenStream(ctx, hsPush, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("left-behind call returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a left-behind Send or Recv is still blocked")
		}
	}
	for {
		if _, err := st.Recv(); err != nil {
			break
		}
	}
	waitNoStreams(t, p)
}

// TestServeConcurrentBigSends: Sends from several goroutines of one Serve
// handler, each message large enough to go in chunks, arrive whole: the
// chunks of two messages must not interleave (the peer would end the
// session for it).
func TestServeConcurrentBigSends(t *testing.T) {
	const senders, each, size = 4, 3, 300 << 10
	reg := new(handlers.Registry)
	mustStream(t, reg, hsServe, handlers.StreamHandler{OutCapacity: 4, Serve: concurrentSends(senders, each, func(g, _ int) []byte {
		return bytes.Repeat([]byte{byte('a' + g)}, size)
	})})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	st, err := p.client.NewStream(testCtx(t), hsServe, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := waitClosed(t, st)
	counts := make(map[byte]int)
	for i, r := range rs {
		if r.Err != nil {
			t.Fatalf("response %d of %d: %v", i, len(rs), r.Err)
		}
		if len(r.Msg) != size || !bytes.Equal(r.Msg, bytes.Repeat(r.Msg[:1], size)) {
			t.Fatalf("message %d: %d bytes, not one sender's whole message", i, len(r.Msg))
		}
		counts[r.Msg[0]]++
	}
	if len(rs) != senders*each || len(counts) != senders {
		t.Fatalf("got %d messages from %d senders, want %d from %d", len(rs), len(counts), senders*each, senders)
	}
	waitNoStreams(t, p)
}

// concurrentSends is a Serve handler whose senders goroutines each Send
// each messages, msg(sender, i), at once; it returns the first error.
func concurrentSends(senders, each int, msg func(g, i int) []byte) func(context.Context, []byte, handlers.ServerStream) error {
	return func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for g := range senders {
			wg.Go(func() {
				for i := range each {
					if err := st.Send(ctx, msg(g, i)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
}
