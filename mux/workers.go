package mux

import (
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// job is a request handed to a worker, or a stream's end hook (end).
type job struct {
	rc      *reqCtx
	fn      handlers.SingleHandler
	h       handlers.HandlerID
	payload []byte
	pb      *[]byte
	charged int64 // counted in reqIn until the handler returns
	arrived int64 // when the request arrived whole (Session.readAt), with Config.Observer

	end    func(error) // Stream.OnEnd's, run with endErr (hooks.go)
	endErr error
}

// workerIdle is how long a worker waits for another request before it
// exits. Reusing workers spares a goroutine start and its stack growth per
// request.
const workerIdle = 5 * time.Second

// worker runs j, then further jobs handed to it, until it has been idle for
// workerIdle or the session ended.
func (s *Session) worker(j job) {
	defer s.handlers.Done()
	w := &idleWorker{jobs: make(chan job, 1)}
	for {
		if j.end != nil {
			j.end(j.endErr)
		} else {
			s.serve(j)
		}
		if !s.workers.park(w) {
			return
		}
		var ok bool
		if j, ok = <-w.jobs; !ok {
			return
		}
	}
}

// idleWorker is a worker waiting for its next job on jobs. Whoever takes it
// off the pool's stack either sends it one job or closes jobs to make it
// exit.
type idleWorker struct {
	jobs  chan job // capacity 1
	epoch uint64   // the pool's epoch when it parked
}

// workerPool keeps a session's idle workers on a stack, most recently
// parked on top, so that a busy session reuses few workers and the ones at
// the bottom stay idle and can be retired. A worker waits on its own
// channel, not in a select shared with every other worker, so handing it a
// job costs one uncontended channel send. There are no per-request timers:
// one timer per session retires, every workerIdle, the workers that were
// idle through a whole period.
type workerPool struct {
	mu     sync.Mutex
	idle   []*idleWorker
	epoch  uint64      // counts reaper runs
	reaper *time.Timer // nil until the first worker parks
	armed  bool        // reaper will run
	closed bool
}

// take pops the most recently parked worker, or returns nil.
func (p *workerPool) take() *idleWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	w := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return w
}

// park puts w on the stack; it reports false if the session ended and the
// worker must exit instead.
func (p *workerPool) park(w *idleWorker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	w.epoch = p.epoch
	p.idle = append(p.idle, w)
	if !p.armed {
		p.armed = true
		if p.reaper == nil {
			p.reaper = time.AfterFunc(workerIdle, p.reap)
		} else {
			p.reaper.Reset(workerIdle)
		}
	}
	return true
}

// reap retires the workers that have been idle since before the previous
// run (between one and two periods), and runs again while any is idle.
func (p *workerPool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.epoch++
	n := 0 // the oldest are at the bottom
	for n < len(p.idle) && p.idle[n].epoch+1 < p.epoch {
		close(p.idle[n].jobs)
		p.idle[n] = nil
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	if len(p.idle) > 0 {
		p.reaper.Reset(workerIdle)
	} else {
		p.armed = false
	}
}

// close makes every idle worker exit, and workers that finish later too.
func (p *workerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for i, w := range p.idle {
		close(w.jobs)
		p.idle[i] = nil
	}
	p.idle = nil
	if p.reaper != nil {
		p.reaper.Stop()
	}
}
