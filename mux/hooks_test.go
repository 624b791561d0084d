package mux_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

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
