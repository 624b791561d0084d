package mux_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// TestAbandonLeavesStuckHandlers: handlers that ignore their cancelled
// context do not hold up Abandon, which waits only for the reader and the
// writer. They are counted as orphaned (not running) until they return,
// and their answers are dropped: nothing more is written. Close then
// waits for them.
func TestAbandonLeavesStuckHandlers(t *testing.T) {
	hStuck, hsStuck := handlers.New(40, "stuck"), handlers.New(41, "stream-stuck")
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	started := make(chan struct{}, 2)
	reg := new(handlers.Registry)
	mustRegister(t, reg, hStuck, func(context.Context, []byte) ([]byte, error) {
		started <- struct{}{}
		<-release
		return []byte("late answer"), nil
	})
	if err := reg.RegisterStream(hsStuck, handlers.StreamHandler{Serve: func(context.Context, []byte, handlers.ServerStream) error {
		started <- struct{}{}
		<-release
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	t.Cleanup(free) // before the pair's Close, which waits for handlers

	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() {
		_, err := p.client.Request(ctx, hStuck, nil)
		done <- err
	}()
	st, err := p.client.NewStream(ctx, hsStuck, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, started)
	recv(t, started)

	start := time.Now()
	p.server.Abandon()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Abandon took %v with two handlers stuck", took)
	}
	if err := recv(t, done); !errors.Is(err, mux.ErrDisconnected) {
		t.Fatalf("request to the stuck handler: %v, want ErrDisconnected", err)
	}
	if r := recv(t, st.Responses); !errors.Is(r.Err, mux.ErrDisconnected) {
		t.Fatalf("stream to the stuck handler: %+v, want ErrDisconnected", r)
	}
	got := p.server.Stats()
	if got.OrphanedHandlers != 2 || got.Running != 0 || got.Unanswered != 0 || got.StreamsIn != 0 {
		t.Fatalf("abandoned with two stuck handlers: orphaned %d, running %d, unanswered %d, streams in %d; want 2, 0, 0, 0",
			got.OrphanedHandlers, got.Running, got.Unanswered, got.StreamsIn)
	}

	free()
	closed := make(chan struct{})
	go func() {
		p.server.Close()
		close(closed)
	}()
	waitFor(t, closed)
	after := p.server.Stats()
	if after.OrphanedHandlers != 0 || after.Served != got.Served+1 {
		t.Fatalf("after the handlers returned: orphaned %d, served %d; want 0 and %d", after.OrphanedHandlers, after.Served, got.Served+1)
	}
	if after.BytesOut != got.BytesOut || after.Writes != got.Writes {
		t.Fatalf("the late answers were written: %d bytes in %d writes, before %d in %d", after.BytesOut, after.Writes, got.BytesOut, got.Writes)
	}
}
