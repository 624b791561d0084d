package mux_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

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

// TestSlowReaderMemory: callers that read their streams slowly hold no
// more than their credit and MaxStreamBytes allow. 16 streams with a
// window of 8 messages of 1 MiB (and 100 bytes: a message just over a
// power of two used to be gathered into a buffer twice its size, 2 MiB)
// may hold 16 × 8 of them, 128 MiB; with the default MaxStreamBytes
// (64 MiB) the senders wait once the streams hold that much beyond their
// reserves. The live heap (after GC, both sides in this process: the
// handlers add one message each) is sampled while the callers read one
// message every 200 ms.
func TestSlowReaderMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("holds over 100 MiB")
	}
	const (
		streams = 16
		window  = 8
		size    = 1<<20 + 100
		page    = size / 16 // a buffer of a message in chunks is its size class's, at most a sixteenth more
	)
	for _, tc := range []struct {
		name  string
		bytes int64 // MaxStreamBytes
		held  int64 // what the callers may hold
	}{
		{"credit", 1 << 30, streams * window * (size + page)},
		{"MaxStreamBytes", 0, 64<<20 + streams*(4<<10) + streams*(size+page)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := echoRegistry(t)
			msg := make([]byte, size)
			mustStream(t, reg, hsPush, handlers.StreamHandler{OutCapacity: window, Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
				for {
					if err := st.Send(ctx, msg); err != nil {
						return err
					}
				}
			}})
			cfg := mux.Config{MaxStreamBytes: tc.bytes}
			p := newPair(t, transports[1], reg, cfg, cfg)
			singleRequests(t, p.client, 1)
			base := memInUse()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			for range streams {
				st, err := p.client.NewStream(ctx, hsPush, nil)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					for {
						time.Sleep(200 * time.Millisecond)
						if _, err := st.Recv(); err != nil {
							return
						}
					}
				})
			}
			var most int64
			for range 20 {
				time.Sleep(100 * time.Millisecond)
				most = max(most, memInUse().heap-base.heap)
			}
			cancel()
			wg.Wait()
			// The handlers' side holds a message each, the session's
			// queues a few MiB.
			limit := tc.held + streams*size + 8<<20
			t.Logf("16 streams of 1 MiB messages, read slowly: at most %.1f MiB live, of which the callers may hold %.1f MiB (limit with the handlers' side: %.1f MiB)",
				float64(most)/(1<<20), float64(tc.held)/(1<<20), float64(limit)/(1<<20))
			if most > limit {
				t.Errorf("%.1f MiB live, want at most %.1f MiB", float64(most)/(1<<20), float64(limit)/(1<<20))
			}
			waitNoStreams(t, p)
		})
	}
}
