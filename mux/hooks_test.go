package mux_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

// msgCounter counts OnStreamMessage calls by (serving, in).
type msgCounter struct {
	mu sync.Mutex
	n  map[[2]bool]int
	h  map[handlers.HandlerID]bool
}

func (c *msgCounter) note(h handlers.HandlerID, serving, in bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n, c.h = map[[2]bool]int{}, map[handlers.HandlerID]bool{}
	}
	c.n[[2]bool{serving, in}]++
	c.h[h] = true
}

func (c *msgCounter) get(serving, in bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[[2]bool{serving, in}]
}

// TestOnStreamMessage: every whole message of a stream, chunked or not,
// is told once on each side, with its direction.
func TestOnStreamMessage(t *testing.T) {
	for _, form := range []struct {
		name string
		h    handlers.HandlerID
	}{{"handle", hsEcho}, {"serve", hsServe}} {
		t.Run(form.name, func(t *testing.T) {
			var cc, sc msgCounter
			reg := new(handlers.Registry)
			mustStream(t, reg, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 2, OutCapacity: 2})
			mustStream(t, reg, hsServe, handlers.StreamHandler{Serve: streamtest.ServeEcho, InCapacity: 2, OutCapacity: 2})
			p := newPair(t, transports[1], reg, mux.Config{OnStreamMessage: cc.note}, mux.Config{OnStreamMessage: sc.note})
			st, err := p.client.NewStream(testCtx(t), form.h, nil)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for _, n := range []int{1, 2*mux.MaxFramePayload + 3, 0} {
					st.Requests <- randomBytes(n)
				}
				close(st.Requests)
			}()
			rs := streamtest.Drain(t, st, testTimeout)
			if len(rs) != 3 {
				t.Fatalf("%d responses: %+v", len(rs), rs)
			}
			if c, s := [2]int{cc.get(false, false), cc.get(false, true)}, [2]int{sc.get(true, false), sc.get(true, true)}; c != [2]int{3, 3} || s != [2]int{3, 3} {
				t.Fatalf("client sent/received %v, server sent/received %v; want 3 each", c, s)
			}
			if !cc.h[form.h] || len(cc.h) != 1 || !sc.h[form.h] || len(sc.h) != 1 {
				t.Fatalf("handlers told: client %v server %v", cc.h, sc.h)
			}
		})
	}
}

// TestStreamOnEnd: OnEnd's functions run once the stream ended, with its
// error; one registered after the end runs at once; the session's end is
// an end too.
func TestStreamOnEnd(t *testing.T) {
	p := newPair(t, transports[1], interceptRegistry(t), mux.Config{}, mux.Config{})
	ctx := testCtx(t)
	ended := make(chan error, 4)
	note := func(err error) { ended <- err }

	st, err := p.client.NewStream(ctx, hsWho, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.OnEnd(note)
	streamtest.Drain(t, st, testTimeout)
	if err := recv(t, ended); err != nil {
		t.Fatalf("clean end: %v", err)
	}
	st.OnEnd(note) // after the end
	if err := recv(t, ended); err != nil {
		t.Fatalf("registered after the end: %v", err)
	}

	st, err = p.client.NewStream(ctx, hsFails, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.OnEnd(note)
	streamtest.Drain(t, st, testTimeout)
	if err := recv(t, ended); err == nil || !strings.Contains(err.Error(), "stream says no") {
		t.Fatalf("failed stream's end: %v", err)
	}

	st, err = p.client.NewStream(ctx, hsEcho, nil) // stays open
	if err != nil {
		t.Fatal(err)
	}
	st.OnEnd(note)
	st.Cancel()
	if err := recv(t, ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled stream's end: %v", err)
	}

	st, err = p.client.NewStream(ctx, hsEcho, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.OnEnd(note)
	p.client.Close()
	if err := recv(t, ended); !errors.Is(err, mux.ErrDisconnected) {
		t.Fatalf("end of a stream whose session closed: %v", err)
	}
}

// TestStreamOnEndQuick: a quick end hook has run by the time Responses
// closes (a caller who drained the stream sees what it did at once),
// with the stream's error; one registered after the end runs at once.
func TestStreamOnEndQuick(t *testing.T) {
	p := newPair(t, transports[1], interceptRegistry(t), mux.Config{}, mux.Config{})
	ctx := testCtx(t)
	for _, h := range []handlers.HandlerID{hsWho, hsFails} {
		st, err := p.client.NewStream(ctx, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		var runs atomic.Int32
		var got error
		st.OnEndQuick(func(err error) { got = err; runs.Add(1) })
		streamtest.Drain(t, st, testTimeout)
		if n := runs.Load(); n != 1 {
			t.Fatalf("%v: the quick hook ran %d times by the time Responses closed", h, n)
		}
		if (h == hsFails) != (got != nil) {
			t.Fatalf("%v: the quick hook got %v", h, got)
		}
		st.OnEndQuick(func(error) { runs.Add(1) })
		if n := runs.Load(); n != 2 {
			t.Fatal("a quick hook registered after the end did not run at once")
		}
	}
}

// TestStreamOnEndMayWait: an end hook that waits holds up neither the
// session (it runs off the reader: requests and streams go on) nor
// anyone touching the stream (it runs without the stream's lock: it may
// call the stream's methods, at the session's end too); Close waits for
// it.
func TestStreamOnEndMayWait(t *testing.T) {
	p := newPair(t, transports[1], interceptRegistry(t), mux.Config{}, mux.Config{})
	ctx := testCtx(t)
	release := make(chan struct{})
	entered := make(chan error, 2)
	hook := func(st *mux.Stream) func(error) {
		return func(err error) {
			<-st.Done() // the stream's lock: not held
			entered <- err
			<-release
		}
	}
	st, err := p.client.NewStream(ctx, hsWho, nil) // ends on the reader
	if err != nil {
		t.Fatal(err)
	}
	st.OnEnd(hook(st))
	streamtest.Drain(t, st, testTimeout)
	if err := recv(t, entered); err != nil {
		t.Fatalf("clean end: %v", err)
	}
	// The hook waits: the session goes on meanwhile.
	if resp, err := p.client.Request(ctx, hEcho, []byte("x")); err != nil || string(resp) != "x" {
		t.Fatalf("request while an end hook waits: %q %v", resp, err)
	}
	st2, err := p.client.NewStream(ctx, hsWho, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs := streamtest.Drain(t, st2, testTimeout); len(rs) != 1 || rs[0].Err != nil {
		t.Fatalf("stream while an end hook waits: %+v", rs)
	}

	// One ended by the session's end: the hook runs off the lock too.
	st3, err := p.client.NewStream(ctx, hsEcho, nil) // stays open
	if err != nil {
		t.Fatal(err)
	}
	st3.OnEnd(hook(st3))
	closed := make(chan struct{})
	go func() {
		p.client.Close()
		close(closed)
	}()
	if err := recv(t, entered); !errors.Is(err, mux.ErrDisconnected) {
		t.Fatalf("end of a stream whose session closed: %v", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while end hooks were running")
	default:
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("Close did not return once the end hooks did")
	}
}

// TestStreamHooksAllocs: stream interceptors that allocate nothing, with
// end hooks made once, add no allocation to a stream (the server's chain
// is built once per session; the hooks take a slot each, and the one
// that may wait goes to an idle worker, not to a new goroutine).
func TestStreamHooksAllocs(t *testing.T) {
	if mux.RaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	var quick, waited atomic.Int64
	onQuick := func(error) { quick.Add(1) }
	onEnd := func(error) { waited.Add(1) }
	cic := func(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamOpener) (*mux.Stream, error) {
		st, err := next(ctx, info, payload)
		if err == nil {
			st.OnEndQuick(onQuick)
			st.OnEnd(onEnd)
		}
		return st, err
	}
	sic := func(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
		return next(ctx, info, payload)
	}
	allocs := func(ccfg, scfg mux.Config) float64 {
		p := newPair(t, transports[1], interceptRegistry(t), ccfg, scfg)
		ctx := context.Background()
		open := func() {
			st, err := p.client.NewStream(ctx, hsWho, nil)
			if err != nil {
				t.Fatal(err)
			}
			for r := range st.Responses {
				mux.Recycle(r.Msg)
			}
		}
		for range 100 {
			open()
		}
		return testing.AllocsPerRun(300, open)
	}
	bare := allocs(mux.Config{}, mux.Config{})
	hooked := allocs(mux.Config{ClientStreamInterceptors: []mux.ClientStreamInterceptor{cic}},
		mux.Config{ServerStreamInterceptors: []mux.ServerStreamInterceptor{sic, sic}})
	t.Logf("allocations per stream: %.2f bare, %.2f with interceptors and end hooks", bare, hooked)
	if hooked > bare+0.3 {
		t.Fatalf("interceptors and end hooks add %.2f allocations per stream", hooked-bare)
	}
	if quick.Load() != 401 {
		t.Fatalf("the quick hook ran %d times, want 401", quick.Load())
	}
}
