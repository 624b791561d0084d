package mux_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// TestSessionEnded: a handler's context tells whether its session ended
// it (mux.SessionEnded) or its caller did, by cancelling or by its
// deadline; a context of no session is never "ended by its session".
func TestSessionEnded(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(p *pair, cancel context.CancelFunc)
		ctx  func(t *testing.T) (context.Context, context.CancelFunc)
		want bool
	}{
		{"caller cancels", func(_ *pair, cancel context.CancelFunc) { cancel() }, cancellable, false},
		{"deadline", func(*pair, context.CancelFunc) {}, func(t *testing.T) (context.Context, context.CancelFunc) {
			// Long enough for the call to reach its handler on a
			// loaded machine.
			return context.WithTimeout(testCtx(t), 500*time.Millisecond)
		}, false},
		{"client session closes", func(p *pair, _ context.CancelFunc) { p.client.Close() }, cancellable, true},
		{"connection breaks", func(p *pair, _ context.CancelFunc) { p.clientConn.Close() }, cancellable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := new(handlers.Registry)
			started, ended := make(chan struct{}), make(chan bool, 1)
			mustRegister(t, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
				close(started)
				<-ctx.Done()
				ended <- mux.SessionEnded(context.WithValue(ctx, testKey{}, 1)) // derived contexts ask their parent
				return nil, ctx.Err()
			})
			p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
			ctx, cancel := tc.ctx(t)
			defer cancel()
			go func() { _, _ = p.client.Request(ctx, hBlock, nil) }()
			waitFor(t, started)
			tc.end(p, cancel)
			if got := recv(t, ended); got != tc.want {
				t.Fatalf("SessionEnded = %v, want %v", got, tc.want)
			}
		})
	}
	if mux.SessionEnded(context.Background()) {
		t.Fatal("SessionEnded(Background) is true")
	}
}

// testKey is a context key of these tests.
type testKey struct{}

func cancellable(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(testCtx(t))
}

// TestHandlerContextAfterFunc: context.AfterFunc on a handler's context,
// and cancellation of contexts derived from it, start no goroutine while
// it is live, and run when it ends; a stopped one does not run.
func TestHandlerContextAfterFunc(t *testing.T) {
	reg := new(handlers.Registry)
	ran := make(chan string, 3)
	watching := make(chan int, 1)
	mustRegister(t, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
		before := runtime.NumGoroutine()
		context.AfterFunc(ctx, func() { ran <- "after" })
		stop := context.AfterFunc(ctx, func() { ran <- "stopped" })
		derived, cancel := context.WithCancel(ctx)
		defer cancel()
		context.AfterFunc(derived, func() { ran <- "derived" })
		if !stop() {
			t.Error("stop of a live AfterFunc returned false")
		}
		watching <- runtime.NumGoroutine() - before
		<-ctx.Done()
		<-derived.Done()
		return nil, ctx.Err()
	})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.client.Request(ctx, hBlock, nil)
	}()
	if n := recv(t, watching); n >= 2 { // a goroutine per watcher would be 2 (one was stopped)
		t.Errorf("watching the handler's context started %d goroutines", n)
	}
	cancel()
	got := map[string]bool{recv(t, ran): true, recv(t, ran): true}
	if !got["after"] || !got["derived"] {
		t.Fatalf("ran %v, want after and derived", got)
	}
	select {
	case s := <-ran:
		t.Fatalf("%s ran too", s)
	case <-time.After(50 * time.Millisecond):
	}
	waitFor(t, done)
}
