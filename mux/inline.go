package mux

import (
	"errors"
	"math"
	"sync/atomic"
	"time"
)

// Inline handlers.
//
// A single handler registered inline (handlers.Registry.RegisterInline)
// runs on the goroutine that reads the session, between two frames: the
// request is not handed to a worker, so no goroutine is made runnable and
// no idle thread is woken to run it. On a connection that carries a few
// calls at a time, that hand-off is a measurable part of a round trip
// (internal/bench/MESH.md, Inline handlers).
//
// The reader must never wait on user code: a slow frame of one call would
// hold up every other call, stream credit, ping and cancel on the
// connection, and a handler that calls back over its own session would
// wait forever for an answer only the reader can read. So a watchdog
// bounds the time: when an inline handler, with the queueing of its
// answer, has not finished within Config.InlineBudget, the reading moves
// to a new goroutine, and the goroutine that runs the handler finishes it
// as a worker would. Cancel frames reach such a handler once the reading
// has moved; a handler that returns within the budget sees only its
// deadline.

// errHandedOver is how the goroutine whose inline handler overran its
// budget leaves the reading: handleFrame returns it up to read. It never
// leaves the package.
var errHandedOver = errors.New("mux: reading handed over")

// inlineGuard is the watchdog's state. run is gen<<1 | 1 while the reader
// runs an inline handler of generation gen, and gen<<1 otherwise; whoever
// clears the low bit first, the reader on the handler's return or the
// watchdog on its timer, decides whether the reading moved.
type inlineGuard struct {
	run   atomic.Uint64
	gen   uint64      // the reader's: the last generation begun
	timer *time.Timer // the reader's: made stopped, armed for each handler
}

// serveInline runs j on the reader under the watchdog. It returns
// errHandedOver if the reading moved to another goroutine meanwhile.
func (s *Session) serveInline(j job) error {
	g := &s.inl
	if g.timer == nil {
		g.timer = time.AfterFunc(math.MaxInt64, s.inlineOverrun)
	}
	g.gen++
	running := g.gen<<1 | 1
	g.run.Store(running)
	g.timer.Reset(s.cfg.InlineBudget)
	s.stats.inline.Add(1)
	returned := false
	defer func() {
		if !returned {
			// The handler called runtime.Goexit, and this goroutine ends
			// here as a worker's would: the reading moves on (unless the
			// watchdog moved it already), and this goroutine counts as a
			// worker that left.
			s.inlineOverrun()
			s.handlers.Done()
		}
	}()
	s.serve(j)
	returned = true
	if g.run.CompareAndSwap(running, running&^1) {
		g.timer.Stop()
		return nil
	}
	return errHandedOver
}

// inlineOverrun is the watchdog: if the reader is still in an inline
// handler, the reading moves to a new goroutine, and the one in the handler
// counts as a worker from now on. The timer calls it, and so does fail, so
// that Abandon need not wait out the budget. A timer that fires late, for
// a handler that has returned, may find the next one running and move the
// reading early; that costs a goroutine, nothing else.
func (s *Session) inlineOverrun() {
	v := s.inl.run.Load()
	if v&1 == 0 || !s.inl.run.CompareAndSwap(v, v&^1) {
		return
	}
	s.stats.handoffs.Add(1)
	// The reader has not ended (it is in the handler), so Close is not
	// yet waiting on handlers.
	s.handlers.Add(1)
	go s.readLoop(s.rd)
}
