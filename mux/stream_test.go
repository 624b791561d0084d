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
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

var (
	hsEcho    = handlers.New(30, "stream-echo")
	hsPush    = handlers.New(31, "stream-push")
	hsBlock   = handlers.New(32, "stream-block")
	hsFail    = handlers.New(33, "stream-fail")
	hsInspect = handlers.New(34, "stream-inspect")
	hsBig     = handlers.New(35, "stream-big")
	hsServe   = handlers.New(36, "stream-serve")
)

func mustStream(tb testing.TB, reg *handlers.Registry, id handlers.HandlerID, h handlers.StreamHandler) {
	tb.Helper()
	if err := reg.RegisterStream(id, h); err != nil {
		tb.Fatal(err)
	}
}

// waitNoStreams waits until neither side holds stream or request state.
func waitNoStreams(tb testing.TB, p *pair) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		c, s := p.client.Stats(), p.server.Stats()
		if c.StreamsOut == 0 && c.StreamsIn == 0 && s.StreamsOut == 0 && s.StreamsIn == 0 && c.InFlight == 0 && s.Running == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("stream state left: client %+v server %+v", c, s)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStreamRoundTrip(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := new(handlers.Registry)
		mustStream(t, reg, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)
		st, err := p.client.NewStream(ctx, hsEcho, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 11 {
			msg := fmt.Appendf(nil, "message %d", i)
			if err := st.Send(ctx, msg); err != nil {
				t.Fatal(err)
			}
			if r := recvNext(t, st); r.Err != nil || !bytes.Equal(r.Msg, msg) {
				t.Fatalf("round %d: %q %v", i, r.Msg, r.Err)
			}
		}
		close(st.Requests)
		if rest := waitClosed(t, st); len(rest) != 0 {
			t.Fatalf("after close: %v", rest)
		}
		waitNoStreams(t, p)
	})
}

func TestStreamNoInputAndHandlerError(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := new(handlers.Registry)
		mustStream(t, reg, hsPush, handlers.StreamHandler{OutCapacity: 4, Handle: func(ctx context.Context, p []byte, in <-chan []byte, out chan<- []byte) error {
			if in != nil {
				return errors.New("in should be nil")
			}
			for i := range 5 {
				select {
				case out <- fmt.Appendf(nil, "%s %d", p, i):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}})
		mustStream(t, reg, hsFail, handlers.StreamHandler{Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
			out <- []byte("partial")
			return errors.New("gave up")
		}})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		checkPushAndFail(t, p)
		_, err := p.client.NewStream(testCtx(t), hMissing, nil)
		if !errors.Is(err, mux.ErrUnknownHandler) {
			t.Fatalf("unknown: %v", err)
		}
		waitNoStreams(t, p)
	})
}

// checkPushAndFail checks the answers of the server's hsPush handler (no
// input; five messages "<payload> <i>") and hsFail handler (the message
// "partial", then the error "gave up").
func checkPushAndFail(t *testing.T, p *pair) {
	t.Helper()
	ctx := testCtx(t)
	st, err := p.client.NewStream(ctx, hsPush, []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != nil {
		t.Fatal("Requests should be nil for a handler without input")
	}
	var got []string
	if err := st.Results(func(m []byte) error { got = append(got, string(m)); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "n 0,n 1,n 2,n 3,n 4" {
		t.Fatalf("got %v", got)
	}
	st, err = p.client.NewStream(ctx, hsFail, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := waitClosed(t, st)
	var re *mux.RemoteError
	if len(rs) != 2 || string(rs[0].Msg) != "partial" || !errors.As(rs[1].Err, &re) || re.Msg != "gave up" {
		t.Fatalf("got %+v", rs)
	}
}

// blockingHandler records that it started and how its context ended.
type blockingHandler struct {
	started chan struct{}
	ended   chan error
}

func newBlocking() *blockingHandler { return newBlockingN(1) }

// newBlockingN is newBlocking for n streams at once.
func newBlockingN(n int) *blockingHandler {
	return &blockingHandler{started: make(chan struct{}, n), ended: make(chan error, n)}
}

func (b *blockingHandler) handle(ctx context.Context, _ []byte, _ <-chan []byte, _ chan<- []byte) error {
	b.started <- struct{}{}
	<-ctx.Done()
	b.ended <- ctx.Err()
	return ctx.Err()
}

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
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
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
		if off := s.d.Sub(start.Add(50 * time.Millisecond)); off < -time.Millisecond || off > 2*time.Second {
			t.Fatalf("handler deadline off by %v", off)
		}
		waitNoStreams(t, p)
	})
}

// TestStreamServerOutCongestion: a handler pushes 100 messages to a caller
// that is not reading; 100 single requests on the same session still
// succeed; then all 100 messages arrive in order.
func TestStreamServerOutCongestion(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := echoRegistry(t)
		mustStream(t, reg, hsPush, handlers.StreamHandler{OutCapacity: 1, Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
			for i := range 100 {
				select {
				case out <- fmt.Appendf(nil, "%03d", i):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)
		st, err := p.client.NewStream(ctx, hsPush, nil)
		if err != nil {
			t.Fatal(err)
		}
		singleRequests(t, p.client, 100)
		for i := range 100 {
			if r := recvNext(t, st); r.Err != nil || string(r.Msg) != fmt.Sprintf("%03d", i) {
				t.Fatalf("message %d: %q %v", i, r.Msg, r.Err)
			}
		}
		if rest := waitClosed(t, st); len(rest) != 0 {
			t.Fatalf("extra: %+v", rest)
		}
		waitNoStreams(t, p)
	})
}

// TestStreamServerInCongestion: the handler is blocked with 100 queued input
// messages while 100 single requests succeed.
func TestStreamServerInCongestion(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		release := make(chan struct{})
		reg := echoRegistry(t)
		var received []string
		mustStream(t, reg, hsBlock, handlers.StreamHandler{InCapacity: 100, Handle: func(ctx context.Context, _ []byte, in <-chan []byte, _ chan<- []byte) error {
			<-release
			for m := range in {
				received = append(received, string(m))
			}
			return nil
		}})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)
		st, err := p.client.NewStream(ctx, hsBlock, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			if err := st.Send(ctx, fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		singleRequests(t, p.client, 100)
		close(release)
		close(st.Requests)
		if rest := waitClosed(t, st); len(rest) != 0 {
			t.Fatalf("extra: %+v", rest)
		}
		if len(received) != 100 || received[0] != "0" || received[99] != "99" {
			t.Fatalf("handler received %d messages", len(received))
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

func TestStreamsConcurrent(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := new(handlers.Registry)
		mustStream(t, reg, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 2, OutCapacity: 2})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)
		var wg sync.WaitGroup
		for i := range 1000 {
			wg.Go(func() {
				st, err := p.client.NewStream(ctx, hsEcho, nil)
				if err != nil {
					t.Error(err)
					return
				}
				for j := range 3 {
					msg := fmt.Appendf(nil, "%d/%d", i, j)
					if err := st.Send(ctx, msg); err != nil {
						t.Error(err)
						return
					}
					if r := <-st.Responses; r.Err != nil || !bytes.Equal(r.Msg, msg) {
						t.Errorf("%d/%d: %q %v", i, j, r.Msg, r.Err)
						return
					}
				}
				close(st.Requests)
				for r := range st.Responses {
					t.Errorf("extra %+v", r)
				}
			})
		}
		wg.Wait()
		waitNoStreams(t, p)
	})
}

func TestStreamLimit(t *testing.T) {
	bh := newBlockingN(10)
	reg := new(handlers.Registry)
	mustStream(t, reg, hsBlock, handlers.StreamHandler{Handle: bh.handle})
	p := newPair(t, transports[0], reg, mux.Config{}, mux.Config{MaxStreams: 2})
	ctx, cancel := context.WithCancel(testCtx(t))
	var streams []*mux.Stream
	for range 2 {
		st, err := p.client.NewStream(ctx, hsBlock, nil)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	if _, err := p.client.NewStream(ctx, hsBlock, nil); !errors.Is(err, mux.ErrTooManyStreams) {
		t.Fatalf("third stream: %v", err)
	}
	cancel()
	for _, st := range streams {
		waitClosed(t, st)
	}
	waitNoStreams(t, p)
}

// TestStreamBigMessage sends a 16 MiB message on a stream while single
// requests keep flowing, and reports the worst single-request latency.
func TestStreamBigMessage(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := echoRegistry(t)
		mustStream(t, reg, hsBig, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)
		st, err := p.client.NewStream(ctx, hsBig, nil)
		if err != nil {
			t.Fatal(err)
		}
		big := randomBytes(16 << 20)
		stop := make(chan struct{})
		var lat []time.Duration
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if _, err := p.client.Request(ctx, hEcho, []byte("small")); err != nil {
					t.Error(err)
					return
				}
				lat = append(lat, time.Since(start))
			}
		}()
		if err := st.Send(ctx, big); err != nil {
			t.Fatal(err)
		}
		r := recvNext(t, st)
		close(stop)
		<-done
		if r.Err != nil || !bytes.Equal(r.Msg, big) {
			t.Fatalf("big echo: %d bytes, %v", len(r.Msg), r.Err)
		}
		t.Logf("%d single requests during a 16 MiB stream echo; latency %s", len(lat), streamtest.Latencies(lat))
		if len(lat) == 0 {
			t.Fatal("no single request completed while the big message was in flight")
		}
		close(st.Requests)
		waitClosed(t, st)
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

func TestStreamHandlerPanic(t *testing.T) {
	reg := new(handlers.Registry)
	mustStream(t, reg, hsFail, handlers.StreamHandler{Handle: func(context.Context, []byte, <-chan []byte, chan<- []byte) error {
		panic("stream boom")
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	st, err := p.client.NewStream(testCtx(t), hsFail, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := waitClosed(t, st)
	if len(rs) != 1 || !errors.Is(rs[0].Err, mux.ErrHandlerPanic) {
		t.Fatalf("got %+v", rs)
	}
	waitNoStreams(t, p)
}

func singleRequests(tb testing.TB, s *mux.Session, n int) {
	tb.Helper()
	ctx := testCtx(tb)
	for i := range n {
		msg := fmt.Appendf(nil, "single %d", i)
		got, err := s.Request(ctx, hEcho, msg)
		if err != nil || !bytes.Equal(got, msg) {
			tb.Fatalf("single request %d: %q %v", i, got, err)
		}
	}
}

// TestStreamIdleMemory opens 10,000 idle streams on one session and reports
// what they cost, heap and goroutine stacks, both sides together, then
// closes them all. "chan" streams come from NewStream (the caller's
// Requests channel needs a goroutine to forward it); "send" streams from
// OpenStream, each used for one echo first, as gridmesh bench does (the
// caller's side has no goroutine). On the serving side each stream has the
// handler's goroutine and one more that takes the handler's messages from
// its out channel. "serve" streams are "send" streams to a handler in the
// Serve form, whose streams have the handler's goroutine only; they must
// stay within 64 MiB for the 10,000, both sides together.
func TestStreamIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 streams")
	}
	for _, api := range []string{"chan", "send", "serve"} {
		t.Run(api, func(t *testing.T) { testStreamIdleMemory(t, api != "chan", api == "serve") })
	}
}

func testStreamIdleMemory(t *testing.T, useSend, serveForm bool) {
	const n = 10000
	reg := echoRegistry(t)
	if serveForm {
		mustStream(t, reg, hsEcho, handlers.StreamHandler{Serve: streamtest.ServeEcho, InCapacity: 32, OutCapacity: 32})
	} else {
		mustStream(t, reg, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 32, OutCapacity: 32})
	}
	mustStream(t, reg, hsBlock, handlers.StreamHandler{InCapacity: 1, OutCapacity: 1, Handle: func(ctx context.Context, _ []byte, in <-chan []byte, _ chan<- []byte) error {
		for {
			select {
			case _, ok := <-in:
				if !ok {
					return nil
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	singleRequests(t, p.client, 1) // the session is up
	open := func() *mux.Stream {
		if !useSend {
			st, err := p.client.NewStream(ctx, hsBlock, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		raw, err := p.client.OpenStream(ctx, hsEcho, nil)
		if err != nil {
			t.Fatal(err)
		}
		st := raw.(*mux.Stream)
		msg := make([]byte, 512)
		if err := st.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if got, err := st.Recv(); err != nil || len(got) != len(msg) {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
		return st
	}
	open().Cancel() // warm up
	before := memInUse()
	streams := make([]*mux.Stream, 0, n)
	for range n {
		streams = append(streams, open())
	}
	if c, s := p.client.Stats(), p.server.Stats(); c.StreamsOut < n || s.StreamsIn < n {
		t.Fatalf("open streams: caller %d, server %d", c.StreamsOut, s.StreamsIn)
	}
	after := memInUse()
	heap, stacks := (after.heap-before.heap)/n, (after.stacks-before.stacks)/n
	t.Logf("%d idle streams: %d bytes/stream, %.1f MiB in all (heap %d + stacks %d, caller and server side together; %d goroutines/stream)",
		n, heap+stacks, float64((heap+stacks)*n)/(1<<20), heap, stacks, (after.goroutines-before.goroutines)/n)
	if serveForm {
		if g := after.goroutines - before.goroutines; g > n+n/100 {
			t.Errorf("%d goroutines for %d streams, want one each", g, n)
		}
		if total := (heap + stacks) * n; !mux.RaceEnabled && total > 64<<20 {
			t.Errorf("%.1f MiB for %d idle streams, want at most 64 MiB", float64(total)/(1<<20), n)
		}
	}
	for _, st := range streams[:n/2] {
		st.CloseSend() // half end cleanly
	}
	cancel() // the rest are cancelled
	for _, st := range streams {
		for r := range st.Responses {
			if r.Err != nil && !errors.Is(r.Err, context.Canceled) {
				t.Fatalf("stream ended with %v", r.Err)
			}
		}
	}
	waitNoStreams(t, p)
}

type memUse struct{ heap, stacks, goroutines int64 }

// memInUse returns the heap in use and goroutine stacks after a GC.
func memInUse() memUse {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memUse{int64(ms.HeapAlloc), int64(ms.StackInuse), int64(runtime.NumGoroutine())}
}

// TestStreamCreditBatched: a stream of 10 echoes within a window of 32
// sends no credit frames: 12 frames each way (open or accept, 10
// messages, close-in or end).
func TestStreamCreditBatched(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := echoRegistry(t)
		mustStream(t, reg, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 32, OutCapacity: 32})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)
		singleRequests(t, p.client, 1)
		// A reader counts a frame once it has handled it: wait for the
		// hello and the request (or response) to be counted.
		for p.client.Stats().FramesIn < 2 || p.server.Stats().FramesIn < 2 {
			time.Sleep(time.Millisecond)
		}
		c0, s0 := p.client.Stats(), p.server.Stats()
		raw, err := p.client.OpenStream(ctx, hsEcho, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			msg := fmt.Appendf(nil, "m%d", i)
			if err := raw.Send(ctx, msg); err != nil {
				t.Fatal(err)
			}
			if got, err := raw.Recv(); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo %d: %q %v", i, got, err)
			}
		}
		raw.CloseSend()
		if _, err := raw.Recv(); err != io.EOF {
			t.Fatalf("after CloseSend: %v", err)
		}
		waitNoStreams(t, p)
		// The reader counts a frame after handling it, so the stream's
		// last frame (the end, on the caller's side) may be counted just
		// after its effect is seen: wait for the count, then check that no
		// more came.
		var in, out uint64
		for deadline := time.Now().Add(testTimeout); ; time.Sleep(time.Millisecond) {
			c1, s1 := p.client.Stats(), p.server.Stats()
			in, out = c1.FramesIn-c0.FramesIn, s1.FramesIn-s0.FramesIn
			if in >= 12 && out >= 12 || time.Now().After(deadline) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond) // a stray frame would be counted by now
		c1, s1 := p.client.Stats(), p.server.Stats()
		in, out = c1.FramesIn-c0.FramesIn, s1.FramesIn-s0.FramesIn
		if in != 12 || out != 12 {
			t.Fatalf("frames: %d to the caller, %d to the server; want 12 each", in, out)
		}
		if err := raw.Send(ctx, []byte("late")); !errors.Is(err, mux.ErrStreamEnded) {
			t.Fatalf("Send after the end: %v", err)
		}
	})
}

// TestStreamWindows pushes 300 messages each way through windows of 3
// messages to consumers that read the channels directly and pause now and
// then, so that messages overflow the direct channel slots: every message
// arrives, in order, and credit keeps flowing back.
func TestStreamWindows(t *testing.T) {
	const n = 300
	slow := func(i int) {
		if i%50 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, api := range []string{"chan", "send"} {
			t.Run(api, func(t *testing.T) {
				got := make(chan error, 1)
				reg := new(handlers.Registry)
				mustStream(t, reg, hsPush, handlers.StreamHandler{InCapacity: 3, OutCapacity: 3, Handle: func(ctx context.Context, _ []byte, in <-chan []byte, out chan<- []byte) error {
					go func() {
						i := 0
						for m := range in {
							if string(m) != fmt.Sprint(i) {
								got <- fmt.Errorf("input %d: %q", i, m)
								return
							}
							slow(i)
							i++
						}
						if i != n {
							got <- fmt.Errorf("%d inputs", i)
							return
						}
						got <- nil
					}()
					for i := range n {
						select {
						case out <- []byte(fmt.Sprint(i)):
						case <-ctx.Done():
							return ctx.Err()
						}
					}
					return <-got
				}})
				p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
				ctx := testCtx(t)
				var st *mux.Stream
				if api == "chan" {
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
				sent := make(chan error, 1)
				go func() {
					for i := range n {
						if err := st.Send(ctx, []byte(fmt.Sprint(i))); err != nil {
							sent <- err
							return
						}
					}
					st.CloseSend()
					sent <- nil
				}()
				i := 0
				for r := range st.Responses {
					if r.Err != nil || string(r.Msg) != fmt.Sprint(i) {
						t.Fatalf("response %d: %q %v", i, r.Msg, r.Err)
					}
					slow(i)
					i++
				}
				if i != n {
					t.Fatalf("%d responses", i)
				}
				if err := <-sent; err != nil {
					t.Fatal(err)
				}
				waitNoStreams(t, p)
			})
		}
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

// TestStreamBufferBudget: Config.MaxStreamBytes refuses a stream whose
// buffers (capacity × MaxMessageSize) would exceed it, on the serving side
// (in the accept) and on the calling side (after the accept).
func TestStreamBufferBudget(t *testing.T) {
	const maxMsg = 1 << 10
	bh := newBlockingN(100)
	reg := new(handlers.Registry)
	mustStream(t, reg, hsBlock, handlers.StreamHandler{Handle: bh.handle, InCapacity: 4, OutCapacity: 2})
	forEachTransport(t, func(t *testing.T, tr transport) {
		// The server may buffer the input of two streams (2 × 4 × 1 KiB),
		// the client the output of three (3 × 2 × 1 KiB).
		p := newPair(t, tr, reg, mux.Config{MaxMessageSize: maxMsg, MaxStreamBytes: 3 * 2 * maxMsg},
			mux.Config{MaxMessageSize: maxMsg, MaxStreamBytes: 2 * 4 * maxMsg})
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		var open []*mux.Stream
		for range 2 {
			st, err := p.client.NewStream(ctx, hsBlock, nil)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, st)
		}
		_, err := p.client.NewStream(ctx, hsBlock, nil)
		var re *mux.RemoteError
		if !errors.Is(err, mux.ErrTooManyStreams) || !errors.As(err, &re) {
			t.Fatalf("third stream, over the server's budget: %v", err)
		}
		// The other way round: the server opens streams to the client.
		p2 := newPair(t, tr, reg, mux.Config{MaxMessageSize: maxMsg, MaxStreamBytes: 3 * 2 * maxMsg}, mux.Config{MaxMessageSize: maxMsg})
		for range 3 {
			st, err := p2.client.NewStream(ctx, hsBlock, nil)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, st)
		}
		if _, err := p2.client.NewStream(ctx, hsBlock, nil); !errors.Is(err, mux.ErrTooManyStreams) || errors.As(err, &re) {
			t.Fatalf("fourth stream, over the caller's budget: %v", err)
		}
		open[0].Cancel()
		waitClosed(t, open[0])
		for p.server.Stats().StreamsIn > 1 { // freed when its handler returned
			time.Sleep(time.Millisecond)
		}
		st, err := p.client.NewStream(ctx, hsBlock, nil)
		if err != nil {
			t.Fatalf("after one ended: %v", err)
		}
		open = append(open, st)
		cancel()
		for _, st := range open {
			waitClosed(t, st)
		}
		waitNoStreams(t, p)
		waitNoStreams(t, p2)
	})
}

// recvNext and waitClosed read a stream's Responses within testTimeout.
func recvNext(tb testing.TB, st *mux.Stream) mux.Response {
	tb.Helper()
	return streamtest.Next(tb, st, testTimeout)
}

func waitClosed(tb testing.TB, st *mux.Stream) []mux.Response {
	tb.Helper()
	return streamtest.Drain(tb, st, testTimeout)
}

// TestStreamHandleEchoesPayload: a Handle handler may send its initial
// payload on out and return at once. The payload's buffer must not go
// back to the pool while the pump still has to copy it: the next stream's
// payload would be read into it and sent as this stream's message.
func TestStreamHandleEchoesPayload(t *testing.T) {
	reg := new(handlers.Registry)
	mustStream(t, reg, hsEcho, handlers.StreamHandler{Handle: func(ctx context.Context, p []byte, _ <-chan []byte, out chan<- []byte) error {
		select {
		case out <- p:
		case <-ctx.Done():
		}
		return nil
	}})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				want := bytes.Repeat([]byte{byte('a' + (g*200+i)%26)}, 1000)
				st, err := p.client.NewStream(ctx, hsEcho, want)
				if err != nil {
					t.Error(err)
					return
				}
				rs := waitClosed(t, st)
				if len(rs) != 1 || rs[0].Err != nil || !bytes.Equal(rs[0].Msg, want) {
					if bad.Add(1) == 1 {
						t.Errorf("stream %d/%d: sent %q…, got %d responses, first %q… err %v",
							g, i, want[:4], len(rs), first4(rs), firstErr(rs))
					}
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d of 1600 streams got a wrong first message", n)
	}
}

func first4(rs []mux.Response) []byte {
	if len(rs) == 0 {
		return nil
	}
	return rs[0].Msg[:min(4, len(rs[0].Msg))]
}

func firstErr(rs []mux.Response) error {
	if len(rs) == 0 {
		return nil
	}
	return rs[0].Err
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
