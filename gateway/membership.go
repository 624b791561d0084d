package gateway

import (
	"github.com/gridmesh/gridmesh/grid"
)

// follow keeps the workers in step with m's membership until Close: a
// peer SetHosts added gets a watcher at once (it is asked for its capacity
// as soon as it connects); a peer it removed is never picked again, and
// its watcher forgets it once its connection reaches StateRemoved, after
// the transactions it runs have finished or been re-dispatched. It is
// woken by m.MembershipChanged, never by a timer.
func (d *Dispatcher) follow(m *grid.Manager, members <-chan struct{}) {
	defer d.wg.Done()
	for {
		select {
		case <-members:
		case <-d.ctx.Done():
			return
		}
		members = m.MembershipChanged() // before reading the peers
		d.update(m.Connections())
	}
}

// update starts watching the connections in conns that are new, and marks
// the workers whose connections are not in conns removed.
func (d *Dispatcher) update(conns []*grid.Connection) {
	current := make(map[*grid.Connection]bool, len(conns))
	for _, c := range conns {
		current[c] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	known := make(map[*grid.Connection]bool, len(d.workers))
	for _, w := range d.workers {
		known[w.conn] = true
		if !current[w.conn] && !w.removed {
			w.removed, w.up = true, false
			d.opts.Logger.Info("gateway: worker removed, draining", "worker", w.conn.Host(), "running", w.running)
			d.broadcastLocked()
		}
	}
	for _, c := range conns {
		if known[c] {
			continue
		}
		// probed: a worker that joins later does not hold up the first
		// transactions (settle counts the first peers only).
		w := newWorkerState(c, true)
		d.workers = append(d.workers, w)
		d.opts.Logger.Info("gateway: peer added", "peer", c.Host())
		d.wg.Add(1)
		go d.watch(w)
	}
}

// forget drops a removed worker whose connection is final, counting it
// as probed for a settle still waiting for it.
func (d *Dispatcher) forget(w *workerState) {
	d.settle.probed(&w.probed)
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, x := range d.workers {
		if x == w {
			d.workers = append(d.workers[:i], d.workers[i+1:]...)
			break
		}
	}
	d.homes.set(w, nil)
	d.broadcastLocked()
}
