package mux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
