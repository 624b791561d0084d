package mux_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// observed is one request as a RequestObserver was told of it.
type observed struct {
	h       handlers.HandlerID
	serving bool
	d       time.Duration
	kind    string // mux.ErrorKind of its error
}

// recorder is a RequestObserver that keeps what it is told.
type recorder struct {
	mu    sync.Mutex
	begun map[bool]int
	done  []observed
}

func newRecorder() *recorder { return &recorder{begun: map[bool]int{}} }

func (r *recorder) RequestBegun(h handlers.HandlerID, serving bool) {
	r.mu.Lock()
	r.begun[serving]++
	r.mu.Unlock()
}

func (r *recorder) RequestDone(h handlers.HandlerID, serving bool, d time.Duration, err error) {
	r.mu.Lock()
	r.done = append(r.done, observed{h, serving, d, mux.ErrorKind(err, serving)})
	r.mu.Unlock()
}

// take returns what was done since the last take, and checks that every
// request begun is done.
func (r *recorder) take(t *testing.T) []observed {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range r.done {
		if o.serving {
			n++
		}
	}
	if r.begun[true] != n || r.begun[false] != len(r.done)-n {
		t.Errorf("begun %d client, %d server; done %d client, %d server", r.begun[false], r.begun[true], len(r.done)-n, n)
	}
	done := r.done
	r.done, r.begun = nil, map[bool]int{}
	return done
}

var (
	obSleep = handlers.New(160, "ob-sleep")
	obFail  = handlers.New(161, "ob-fail")
	obPanic = handlers.New(162, "ob-panic")
	obEcho  = handlers.New(163, "ob-echo")
	obNone  = handlers.New(164, "ob-none") // registered nowhere
)

// TestRequestObserver: both sides' observers learn of every request,
// with durations that hold what they say (the caller's round trip
// contains the handler's run, which contains its sleep) and the outcome's
// kind; the observer sees what the outermost interceptor would.
func TestRequestObserver(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		const sleep = 20 * time.Millisecond
		reg := new(handlers.Registry)
		mustRegister(t, reg, obSleep, func(ctx context.Context, p []byte) ([]byte, error) {
			time.Sleep(sleep)
			return p, nil
		})
		mustRegister(t, reg, obFail, func(context.Context, []byte) ([]byte, error) { return nil, errors.New("no") })
		mustRegister(t, reg, obPanic, func(context.Context, []byte) ([]byte, error) { panic("boom") })
		mustRegister(t, reg, obEcho, func(_ context.Context, p []byte) ([]byte, error) { return p, nil })
		co, so := newRecorder(), newRecorder()
		p := newPair(t, tr, reg, mux.Config{Observer: co}, mux.Config{Observer: so})
		ctx := testCtx(t)

		// A request that takes sleep: the caller's duration is at least
		// the handler's, which is at least the sleep; neither is more than
		// Request took.
		start := time.Now()
		if _, err := p.client.Request(ctx, obSleep, []byte("x")); err != nil {
			t.Fatal(err)
		}
		wall := time.Since(start)
		c, s := co.take(t), so.take(t)
		if len(c) != 1 || len(s) != 1 || c[0].h != obSleep || s[0].h != obSleep || c[0].serving || !s[0].serving {
			t.Fatalf("client saw %+v, server %+v", c, s)
		}
		if s[0].d < sleep || c[0].d < s[0].d || c[0].d > wall || c[0].kind != "" || s[0].kind != "" {
			t.Errorf("round trip %v, handler %v, sleep %v, Request took %v; kinds %q %q", c[0].d, s[0].d, sleep, wall, c[0].kind, s[0].kind)
		}

		// Outcomes, by kind on each side. A request for a handler the peer
		// lacks is refused before any handler runs: the server's observer
		// does not see it.
		for _, tc := range []struct {
			h          handlers.HandlerID
			client     string
			server     string
			serverSees bool
		}{
			{obFail, "handler", "handler", true},
			{obPanic, "panic", "panic", true},
			{obNone, "unknown", "", false},
		} {
			if _, err := p.client.Request(ctx, tc.h, nil); err == nil {
				t.Fatalf("%v: no error", tc.h)
			}
			c, s := co.take(t), so.take(t)
			if len(c) != 1 || c[0].kind != tc.client || c[0].d <= 0 {
				t.Errorf("%v: client saw %+v, want kind %q", tc.h, c, tc.client)
			}
			if tc.serverSees != (len(s) == 1) || (tc.serverSees && (s[0].kind != tc.server || s[0].d <= 0)) {
				t.Errorf("%v: server saw %+v, want kind %q", tc.h, s, tc.server)
			}
		}

		// A request in chunks, each side timed once.
		big := bytes.Repeat([]byte("c"), 3*mux.MaxFramePayload+5)
		if resp, err := p.client.Request(ctx, obEcho, big); err != nil || !bytes.Equal(resp, big) {
			t.Fatalf("chunked echo: %d bytes, %v", len(resp), err)
		}
		if c, s := co.take(t), so.take(t); len(c) != 1 || len(s) != 1 || c[0].d < s[0].d || s[0].d <= 0 {
			t.Errorf("chunked: client %+v, server %+v", c, s)
		}

		// A caller who gives up: kind canceled, timed to Request's return.
		cctx, cancel := context.WithCancel(ctx)
		started := time.Now()
		time.AfterFunc(sleep/2, cancel)
		if _, err := p.client.Request(cctx, obSleep, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
		took := time.Since(started)
		// Request began after the timer: its duration is at most what
		// passed since the timer started, and at least half of the delay
		// (the timer fires no sooner than sleep/2 after its start).
		if c := co.take(t); len(c) != 1 || c[0].kind != "canceled" || c[0].d > took || c[0].d <= 0 {
			t.Errorf("cancelled after %v: client saw %+v", took, c)
		}
		// The handler still runs to its end: the server tells of it then.
		waitUntil(t, "the cancelled handler's end", func() bool {
			so.mu.Lock()
			defer so.mu.Unlock()
			return len(so.done) == 1
		})
		so.take(t)
	})
}

// TestRequestObserverOutsideInterceptors: on the calling side the
// observer sees a request refused by an interceptor, and a panic in one
// as it goes up to the caller; on the serving side an interceptor's
// refusal is the call's outcome.
func TestRequestObserverOutsideInterceptors(t *testing.T) {
	reg := new(handlers.Registry)
	mustRegister(t, reg, obEcho, func(_ context.Context, p []byte) ([]byte, error) { return p, nil })
	errRefused := errors.New("refused")
	refuse := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
		switch string(req) {
		case "refuse":
			return nil, errRefused
		case "panic":
			panic("interceptor")
		}
		return next(ctx, info, req)
	}
	guard := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		if string(req) == "deny" {
			return nil, errors.New("denied")
		}
		return next(ctx, info, req)
	}
	co, so := newRecorder(), newRecorder()
	p := newPair(t, transports[1], reg,
		mux.Config{Observer: co, ClientInterceptors: []mux.ClientInterceptor{refuse}},
		mux.Config{Observer: so, ServerInterceptors: []mux.ServerInterceptor{guard}})
	ctx := testCtx(t)

	if _, err := p.client.Request(ctx, obEcho, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if c, s := co.take(t), so.take(t); len(c) != 1 || len(s) != 1 || c[0].kind != "" || s[0].kind != "" || c[0].d < s[0].d {
		t.Errorf("through the interceptors: client %+v, server %+v", c, s)
	}
	if _, err := p.client.Request(ctx, obEcho, []byte("refuse")); !errors.Is(err, errRefused) {
		t.Fatalf("refused: %v", err)
	}
	if c, s := co.take(t), so.take(t); len(c) != 1 || c[0].kind != "other" || len(s) != 0 {
		t.Errorf("refused by the client interceptor: client %+v, server %+v", c, s)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the interceptor's panic did not reach the caller")
			}
		}()
		p.client.Request(ctx, obEcho, []byte("panic"))
	}()
	if c := co.take(t); len(c) != 1 || c[0].kind != "panic" {
		t.Errorf("panic in the client interceptor: client %+v", c)
	}
	if _, err := p.client.Request(ctx, obEcho, []byte("deny")); err == nil {
		t.Fatal("deny: no error")
	}
	if c, s := co.take(t), so.take(t); len(c) != 1 || len(s) != 1 || c[0].kind != "handler" || s[0].kind != "handler" {
		t.Errorf("refused by the server interceptor: client %+v, server %+v", c, s)
	}
}

// TestRequestObserverFailures: a request refused before it is sent, and
// one whose session ends while it waits, are each told once, with their
// kind; the handler's end is told on its side.
func TestRequestObserverFailures(t *testing.T) {
	reg := new(handlers.Registry)
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	mustRegister(t, reg, obSleep, func(ctx context.Context, p []byte) ([]byte, error) {
		running <- struct{}{}
		<-release
		return p, nil
	})
	co, so := newRecorder(), newRecorder()
	p := newPair(t, transports[1], reg, mux.Config{Observer: co, MaxMessageSize: 1 << 10}, mux.Config{Observer: so})
	ctx := testCtx(t)

	if _, err := p.client.Request(ctx, obSleep, make([]byte, 2<<10)); !errors.Is(err, mux.ErrMessageTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if c := co.take(t); len(c) != 1 || c[0].kind != "too_large" {
		t.Errorf("too large: client saw %+v", c)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := p.client.Request(ctx, obSleep, nil)
		errc <- err
	}()
	recv(t, running)
	p.clientConn.Close() // the session ends under the waiting call
	if err := recv(t, errc); !errors.Is(err, mux.ErrDisconnected) {
		t.Fatalf("session ended: %v", err)
	}
	if c := co.take(t); len(c) != 1 || c[0].kind != "disconnected" {
		t.Errorf("session ended: client saw %+v", c)
	}
	close(release)
	waitUntil(t, "the handler's end", func() bool {
		so.mu.Lock()
		defer so.mu.Unlock()
		return len(so.done) == 1
	})
	so.take(t)
}

// TestRequestObserverConcurrent: with many callers, many answers arrive
// in one read and share its stamp; no request is timed shorter than the
// handler's sleep on either side, as one given a stamp from an earlier
// read would be.
func TestRequestObserverConcurrent(t *testing.T) {
	const sleep, callers, each = 2 * time.Millisecond, 32, 10
	reg := new(handlers.Registry)
	mustRegister(t, reg, obSleep, func(ctx context.Context, p []byte) ([]byte, error) {
		time.Sleep(sleep)
		return p, nil
	})
	co, so := newRecorder(), newRecorder()
	p := newPair(t, transports[1], reg, mux.Config{Observer: co}, mux.Config{Observer: so, MaxConcurrent: callers})
	ctx := testCtx(t)
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				if _, err := p.client.Request(ctx, obSleep, []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	c, s := co.take(t), so.take(t)
	if len(c) != callers*each || len(s) != callers*each {
		t.Fatalf("told of %d client and %d server requests, want %d each", len(c), len(s), callers*each)
	}
	for _, o := range append(c, s...) {
		if o.d < sleep || o.d > wall || o.kind != "" {
			t.Fatalf("a request timed %v (kind %q): the handler slept %v, all took %v", o.d, o.kind, sleep, wall)
		}
	}
}
