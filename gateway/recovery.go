package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// A gateway that dies leaves transactions running on workers, and Prime
// delivers them again to the gateway that follows. Workers remember what
// they run and ran (package worker's record); the Dispatcher learns those
// transaction IDs from each worker when its session comes up, before it
// counts the worker as up, and sends a transaction with one of them to
// that worker, which joins it to its run or answers it from the record.
// So that the first transactions after a start do not go elsewhere before
// the workers told, the Dispatcher starts none until every peer has been
// asked once, or SettleTimeout passed.

// maxHomes bounds the transaction IDs the Dispatcher remembers workers
// by: about 100 bytes each.
const maxHomes = 1 << 20

// homes maps a transaction ID to the worker that remembers it. It is
// guarded by Dispatcher.mu.
type homes struct {
	max  int
	byID map[string]*workerState
}

func newHomes(max int) homes { return homes{max: max, byID: make(map[string]*workerState)} }

// set replaces w's IDs with ids and returns how many were kept.
func (h *homes) set(w *workerState, ids []string) int {
	for id, hw := range h.byID {
		if hw == w {
			delete(h.byID, id)
		}
	}
	n := 0
	for _, id := range ids {
		if len(h.byID) >= h.max {
			break
		}
		h.byID[id] = w
		n++
	}
	return n
}

// takeUp returns the worker that remembers id if it is up, and forgets
// id: a transaction is routed home once. A home that is down is kept, so
// that the transaction may wait for it or come back to it later.
func (h *homes) takeUp(id string) *workerState {
	w := h.byID[id]
	if w == nil || !w.up {
		return nil
	}
	delete(h.byID, id)
	return w
}

// learnRecent asks w, on a new session, for the transactions it
// remembers. A worker without the handler (an older one) remembers none;
// a failed call is logged, and its transactions may run twice.
func (d *Dispatcher) learnRecent(w *workerState, session uint64) {
	d.mu.Lock()
	known := w.recentFor == session
	d.mu.Unlock()
	if known {
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.ProbeTimeout)
	rec, err := wire.RecentCall.Call(ctx, w.conn, &handlers.NoPayload{})
	cancel()
	if err != nil && !errors.Is(err, mux.ErrUnknownHandler) {
		d.opts.Logger.Warn("gateway: cannot learn what a worker ran; a transaction it ran may run again",
			"worker", w.conn.Host(), "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	w.recentFor = session
	var ids []string
	if rec != nil {
		ids = rec.IDs
	}
	if kept := d.homes.set(w, ids); kept < len(ids) {
		d.opts.Logger.Warn("gateway: too many remembered transactions; some may run again",
			"worker", w.conn.Host(), "remembered", len(ids), "kept", kept)
	} else if kept > 0 {
		d.opts.Logger.Info("gateway: worker remembers transactions", "worker", w.conn.Host(), "count", kept)
	}
}

// settling is closed once every peer was probed once, or a timeout
// passed; reserve waits for it.
type settling struct {
	mu    sync.Mutex
	left  int
	done  chan struct{}
	timer *time.Timer
}

func (s *settling) start(peers int, timeout time.Duration) {
	s.done, s.left = make(chan struct{}), peers
	if peers == 0 {
		close(s.done)
		return
	}
	s.timer = time.AfterFunc(timeout, s.close)
}

// probed counts a peer's first probe; flag is the peer's own, guarded by
// s.mu.
func (s *settling) probed(flag *bool) {
	s.mu.Lock()
	first := !*flag
	*flag = true
	if first {
		s.left--
	}
	last := first && s.left == 0
	s.mu.Unlock()
	if last {
		s.close()
	}
}

func (s *settling) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// wait waits until the peers settled, or ctx ends.
func (s *settling) wait(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop stops the timer.
func (s *settling) stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// awaitHome waits, after w's connection was lost during a call of
// transaction id, until w is up on a new session whose remembered IDs
// were learned (lostFor was the one learned before), it was removed, ctx
// ended, or HomeWait passed. If w came back remembering id, it returns w,
// reserved for the call (counted in RoutedHome); else nil, and the
// transaction goes wherever there is room: a worker that came back
// without it (it restarted) runs it afresh. A wait that ends without w
// back is counted in HomeGone.
func (d *Dispatcher) awaitHome(ctx context.Context, w *workerState, lostFor uint64, id string) *workerState {
	if d.opts.HomeWait < 0 {
		d.homeGone.Add(1)
		return nil
	}
	timer := time.NewTimer(d.opts.HomeWait)
	defer timer.Stop()
	for {
		d.mu.Lock()
		switch {
		case w.removed:
			d.mu.Unlock()
			d.homeGone.Add(1)
			return nil
		case w.up && w.recentFor != lostFor:
			defer d.mu.Unlock()
			if h := d.homes.takeUp(id); h != nil {
				h.running++
				d.routedHome.Add(1)
				return h
			}
			return nil
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			d.homeGone.Add(1)
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
