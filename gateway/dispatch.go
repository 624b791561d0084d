package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// DispatcherOptions configure a Dispatcher. The zero value works.
type DispatcherOptions struct {
	// ProbeInterval is how often the connections are checked for workers
	// joining, leaving or restarting. Default 100 ms.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one call of a worker's info handler. Default 2 s.
	ProbeTimeout time.Duration
	// Logger receives workers joining and leaving and re-dispatches.
	// Default: discard.
	Logger *slog.Logger
}

// Dispatcher runs transactions on the workers of a grid. It finds the
// workers among the Manager's connections by calling HandlerInfo on each
// peer once it is connected (again after every reconnect), and sends each
// transaction to the connected worker with the most free capacity
// relative to its size. When every worker is full, reserve waits, so the
// gateway stops reading from Prime. A transaction whose worker is lost
// mid-call (grid.ErrDisconnected) is sent to another worker.
//
// All methods may be called concurrently. Close stops the probing.
type Dispatcher struct {
	opts DispatcherOptions

	mu      sync.Mutex
	workers []*workerState
	changed chan struct{} // closed and replaced when capacity may have freed

	redispatched atomic.Uint64
	ctx          context.Context // cancelled by Close: stops the watch loop; parent of the probes
	cancel       context.CancelFunc
	wg           sync.WaitGroup // the watch loop and probes
	closeOnce    sync.Once
}

type workerState struct {
	conn      *grid.Connection
	capacity  int
	running   int
	up        bool
	probing   bool
	notWorker bool   // the peer has no info handler
	connects  uint64 // the connection's session count at the last probe
	done      uint64
}

// WorkerStats describes one worker as the dispatcher sees it.
type WorkerStats struct {
	Host     string `json:"host"`
	Up       bool   `json:"up"`
	Capacity int    `json:"capacity"`
	Running  int    `json:"running"`
	Done     uint64 `json:"done"` // transactions it answered
}

// NewDispatcher starts watching m's connections for workers.
func NewDispatcher(m *grid.Manager, opts DispatcherOptions) *Dispatcher {
	setDefault(&opts.ProbeInterval, 100*time.Millisecond)
	setDefault(&opts.ProbeTimeout, 2*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{opts: opts, changed: make(chan struct{})}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, c := range m.Connections() {
		d.workers = append(d.workers, &workerState{conn: c})
	}
	d.wg.Add(1)
	go d.watch()
	return d
}

// Close stops watching the connections and waits for the probes.
func (d *Dispatcher) Close() error {
	d.closeOnce.Do(func() {
		d.cancel()
		d.wg.Wait()
	})
	return nil
}

// Redispatched returns how many times a transaction was sent to another
// worker after its worker was lost.
func (d *Dispatcher) Redispatched() uint64 { return d.redispatched.Load() }

// Workers returns a snapshot of the known workers.
func (d *Dispatcher) Workers() []WorkerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []WorkerStats
	for _, w := range d.workers {
		if w.notWorker || (w.capacity == 0 && !w.up) {
			continue
		}
		out = append(out, WorkerStats{Host: w.conn.Host(), Up: w.up, Capacity: w.capacity, Running: w.running, Done: w.done})
	}
	return out
}

// WaitForWorkers waits until n workers are up, or ctx ends.
func (d *Dispatcher) WaitForWorkers(ctx context.Context, n int) error {
	for {
		d.mu.Lock()
		up := 0
		for _, w := range d.workers {
			if w.up {
				up++
			}
		}
		ch := d.changed
		d.mu.Unlock()
		if up >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("gateway: %d of %d workers up: %w", up, n, ctx.Err())
		}
	}
}

// broadcastLocked wakes everyone waiting for a change; d.mu is held.
func (d *Dispatcher) broadcastLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// watch notices workers coming up, going down and reconnecting.
func (d *Dispatcher) watch() {
	defer d.wg.Done()
	t := time.NewTicker(d.opts.ProbeInterval)
	defer t.Stop()
	for {
		d.scan()
		select {
		case <-t.C:
		case <-d.ctx.Done():
			return
		}
	}
}

func (d *Dispatcher) scan() {
	for _, w := range d.workers {
		st := w.conn.Stats()
		d.mu.Lock()
		switch {
		case st.State != grid.StateConnected:
			if w.up {
				w.up = false
				d.opts.Logger.Warn("gateway: worker down", "worker", w.conn.Host(), "reason", st.LastError)
				d.broadcastLocked()
			}
		case w.probing:
		case st.Connects != w.connects:
			w.up, w.notWorker, w.probing = false, false, true
			d.wg.Add(1)
			go d.probe(w, st.Connects)
		case !w.up && !w.notWorker:
			w.probing = true
			d.wg.Add(1)
			go d.probe(w, st.Connects)
		}
		d.mu.Unlock()
	}
}

// probe asks w for its capacity.
func (d *Dispatcher) probe(w *workerState, connects uint64) {
	defer d.wg.Done()
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.ProbeTimeout)
	info, err := infoCall.Call(ctx, w.conn, &handlers.NoPayload{})
	cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	w.probing = false
	switch {
	case err == nil && info.Capacity > 0:
		w.connects, w.capacity, w.up = connects, info.Capacity, true
		d.opts.Logger.Info("gateway: worker up", "worker", w.conn.Host(), "capacity", info.Capacity, "mode", info.Mode)
		d.broadcastLocked()
	case errors.Is(err, mux.ErrUnknownHandler):
		w.connects, w.notWorker = connects, true // another gateway, or a node that is not a worker
	}
}

// pickLocked returns the up worker with the lowest load (running relative
// to capacity) that has room, or nil.
func (d *Dispatcher) pickLocked() *workerState {
	var best *workerState
	for _, w := range d.workers {
		if !w.up || w.running >= w.capacity {
			continue
		}
		if best == nil || w.running*best.capacity < best.running*w.capacity {
			best = w
		}
	}
	return best
}

func (d *Dispatcher) reserve(ctx context.Context) (slot, error) {
	for {
		d.mu.Lock()
		if w := d.pickLocked(); w != nil {
			w.running++
			d.mu.Unlock()
			return w, nil
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (d *Dispatcher) release(w *workerState, ok, lost bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w.running--
	if ok {
		w.done++
	}
	if lost && w.up {
		w.up = false // the watch loop probes it again once it is back
	}
	d.broadcastLocked()
}

func (d *Dispatcher) run(ctx context.Context, s slot, req *TxRequest) (*TxResult, error) {
	w := s.(*workerState)
	for {
		res, err := runCall.Call(ctx, w.conn, req)
		lost := errors.Is(err, grid.ErrDisconnected)
		d.release(w, err == nil, lost)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil || (!lost && !errors.Is(err, mux.ErrBusy)) {
			return nil, err
		}
		d.redispatched.Add(1)
		if lost {
			d.opts.Logger.Warn("gateway: worker lost mid-transaction, re-dispatching",
				"transaction_id", req.ID, "worker", w.conn.Host(), "err", err)
		} else if !sleepCtx(ctx, busyRetryDelay) { // the worker had no free handler slot
			return nil, err
		}
		next, rerr := d.reserve(ctx)
		if rerr != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoWorker, rerr)
		}
		w = next.(*workerState)
	}
}

// busyRetryDelay is the pause before re-dispatching a transaction a
// worker refused for lack of handler slots.
const busyRetryDelay = 10 * time.Millisecond

// sleepCtx waits for d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
