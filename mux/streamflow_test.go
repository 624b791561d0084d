package mux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

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

// TestStreamBytesBound: Config.MaxStreamBytes bounds the bytes a side
// holds for its streams' consumers, in both directions, although message
// credit would let the senders send far more: beyond each stream's small
// reserve, the senders wait for room. A stream whose messages fit its
// reserve still flows while the bound is reached, and room made by a
// reader lets the waiting senders go on.
func TestStreamBytesBound(t *testing.T) {
	const (
		maxMsg   = 8 << 10
		bound    = 64 << 10
		msgSize  = 1 << 10
		perMsg   = msgSize + 128 // what a message counts
		reserve  = 4 << 10       // each stream's: MaxStreamBytes / (2 × MaxStreams), at least 4 KiB
		streams  = 3
		mostHeld = bound + streams*reserve
	)
	cfg := mux.Config{MaxMessageSize: maxMsg, MaxStreamBytes: bound}
	for _, dir := range []string{"input", "output"} {
		t.Run(dir, func(t *testing.T) {
			release := make(chan struct{})
			var sent atomic.Int64
			reg := new(handlers.Registry)
			// A handler that reads nothing until released: its input
			// waits on the serving side.
			mustStream(t, reg, hsBlock, handlers.StreamHandler{InCapacity: 1000, Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				for {
					if _, err := st.Recv(ctx); err != nil {
						return nil
					}
				}
			}})
			// A handler that sends until the caller's room runs out: its
			// output waits on the calling side, which does not read.
			mustStream(t, reg, hsPush, handlers.StreamHandler{OutCapacity: 1000, Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
				for {
					if err := st.Send(ctx, make([]byte, msgSize)); err != nil {
						return err
					}
					sent.Add(1)
				}
			}})
			// A small echo, to show that streams within their reserve flow.
			mustStream(t, reg, hsEcho, handlers.StreamHandler{InCapacity: 4, OutCapacity: 4, Serve: streamtest.ServeEcho})
			p := newPair(t, transports[1], reg, cfg, cfg)
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			var open []*mux.Stream
			for range streams {
				var st *mux.Stream
				var err error
				if dir == "input" {
					var raw handlers.RawStream
					raw, err = p.client.OpenStream(ctx, hsBlock, nil)
					st, _ = raw.(*mux.Stream)
					if err == nil {
						go func() {
							for {
								if st.Send(ctx, make([]byte, msgSize)) != nil {
									return
								}
								sent.Add(1)
							}
						}()
					}
				} else {
					st, err = p.client.NewStream(ctx, hsPush, nil)
				}
				if err != nil {
					t.Fatal(err)
				}
				open = append(open, st)
			}
			waitUntil(t, "the bound reached", func() bool { return sent.Load()*perMsg >= bound })
			waitStable(t, &sent, 1)
			held := sent.Load() * perMsg
			t.Logf("%s: %d messages (%d KiB counted) sent before the senders waited; credit allowed %d", dir, sent.Load(), held>>10, streams*1000)
			if held > mostHeld || held < bound {
				t.Fatalf("%d bytes held for the consumers, want %d..%d", held, bound, mostHeld)
			}
			// A stream within its reserve flows meanwhile.
			echo, err := p.client.OpenStream(ctx, hsEcho, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if err := echo.Send(ctx, []byte("small")); err != nil {
					t.Fatal(err)
				}
				if got, err := echo.Recv(); err != nil || string(got) != "small" {
					t.Fatalf("echo %d while the bound is reached: %q %v", i, got, err)
				}
			}
			echo.CloseSend()
			if _, err := echo.Recv(); err != io.EOF {
				t.Fatalf("echo end: %v", err)
			}
			// Room made by a reader lets the waiting senders go on.
			before := sent.Load()
			if dir == "input" {
				close(release)
			} else {
				for range 20 {
					if _, err := open[0].Recv(); err != nil {
						t.Fatal(err)
					}
				}
			}
			for deadline := time.Now().Add(testTimeout); sent.Load() < before+10; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d messages sent after room was made, want 10", sent.Load()-before)
				}
			}
			cancel()
			for _, st := range open {
				waitClosed(t, st)
			}
			waitNoStreams(t, p)
		})
	}
}
