package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/backoff"
	"github.com/gridmesh/gridmesh/internal/defaults"
	"github.com/gridmesh/gridmesh/mux"
)

// DispatcherOptions configure a Dispatcher. The zero value works.
type DispatcherOptions struct {
	// ProbeInterval is how long a connected peer that is not ready to
	// work is left before it is asked again: one whose info handler
	// answered capacity 0 (a draining worker does), failed or timed out,
	// or that has no info handler (a worker still starting, or another
	// gateway). The wait doubles after each such answer, up to
	// MaxProbeInterval, plus a jitter in [0, ProbeInterval) so that a
	// gateway's probes of many workers spread out (internal/backoff, the
	// grid's reconnect formula), and starts over when the peer
	// reconnects.
	// Workers joining, leaving and reconnecting are noticed at once from
	// the grid's state changes (grid.Connection.StateChanged), not by
	// polling. Default 100 ms.
	ProbeInterval time.Duration
	// MaxProbeInterval caps the wait between two asks of a peer that is
	// not ready, before the jitter. Default 5 s.
	MaxProbeInterval time.Duration
	// ProbeTimeout bounds one call of a worker's info handler, and of its
	// handler that lists the transactions it remembers. Default 2 s.
	ProbeTimeout time.Duration
	// SettleTimeout bounds how long a new Dispatcher waits, before it
	// starts the first transaction, for every peer to connect and be
	// asked for its capacity and the transactions it remembers: a
	// transaction Prime delivers again after a gateway restart then goes
	// to the worker that ran it, and is not run twice. Keep it above the
	// grid's BackoffMax (default 5 s), the longest a worker that dials the
	// gateway may take to come back. Default 10 s.
	SettleTimeout time.Duration
	// AnswerGrace is how long past a transaction's own deadline
	// (Options.TxTimeout) the dispatcher waits for its worker's answer
	// before it gives up on that worker and sends the transaction to
	// another. Default 10 s.
	AnswerGrace time.Duration
	// HomeWait is how long a transaction whose worker's connection was
	// lost mid-call waits for that worker to come back before it is sent
	// to another. The worker's run goes on without its gateway and is
	// recorded, so the transaction sent back to it joins the run or is
	// answered from the record: a connection that drops and comes back
	// within HomeWait costs no second run. A worker that does not come
	// back costs its transactions HomeWait of latency, and they run
	// again elsewhere (counted in Rerun), as do those of a worker that
	// comes back without remembering them (it restarted) or that drains.
	// Keep it above the grid's BackoffMax plus a probe (ProbeTimeout):
	// the longest a worker whose link came back takes to be asked what
	// it remembers. Default 5 s (with the grid's default BackoffMax, 5
	// s, a reconnect that waited its longest backoff misses it);
	// negative: send to another worker at once.
	HomeWait time.Duration
	// Logger receives workers joining and leaving and re-dispatches.
	// Default: discard.
	Logger *slog.Logger
}

// Dispatcher runs transactions on the workers of a grid. It finds the
// workers among the Manager's peers by calling wire.HandlerInfo on each
// peer as soon as its connection comes up (again after every reconnect), and
// sends each transaction to the connected worker with the most free
// capacity relative to its size. When every worker is full, reserve
// waits, so the gateway stops reading from Prime. A transaction whose
// worker is lost mid-call (grid.ErrDisconnected) goes back to it if it
// comes back within HomeWait remembering the transaction, else to another
// worker; one that a draining worker refused (wire.TxResult.Draining) is
// sent to another worker.
//
// It watches each connection on a goroutine of its own, woken by the
// connection's state changes; a timer runs only while a connected peer
// is not ready (see DispatcherOptions.ProbeInterval). It follows the
// Manager's membership (grid.Manager.MembershipChanged) on one more
// goroutine: a peer added by SetHosts is watched, and asked for its
// capacity, as soon as it connects; a peer removed gets no new
// transactions from then on, while those it runs finish within the
// grid's RemoveGrace or are re-dispatched (grid.ErrPeerRemoved matches
// grid.ErrDisconnected).
//
// All methods may be called concurrently. Close stops the watching.
type Dispatcher struct {
	opts DispatcherOptions

	mu      sync.Mutex
	workers []*workerState
	next    int           // where pickLocked starts looking: round robin among equals
	changed chan struct{} // closed and replaced when capacity may have freed
	homes   homes         // where remembered transactions ran
	settle  settling      // closed once the first probes are in

	redispatched, rerun, routedHome, fromRecord, homeGone atomic.Uint64
	ctx                                                   context.Context // cancelled by Close: stops the watchers and their probes
	cancel                                                context.CancelFunc
	wg                                                    sync.WaitGroup // the watchers
	closeOnce                                             sync.Once
}

// workerState is one peer as the Dispatcher sees it. Its fields are
// guarded by Dispatcher.mu, except conn and kick, which never change.
type workerState struct {
	conn      *grid.Connection
	kick      chan struct{} // wakes the watcher to ask again at once; buffered 1
	capacity  int
	running   int
	up        bool
	draining  bool // the worker said it is draining: it takes no new transactions
	notWorker bool // the peer has no info handler
	done      uint64
	recentFor uint64 // the session (Connects) whose remembered IDs are in homes
	probed    bool   // asked once: counted in settle
	removed   bool   // SetHosts left the peer out: never picked again

	contract *workerMetrics // never changes; safe without the lock
}

// WorkerStats describes one worker as the dispatcher sees it.
type WorkerStats struct {
	Host     string `json:"host"`
	Up       bool   `json:"up"`
	Capacity int    `json:"capacity"`
	Running  int    `json:"running"`
	Done     uint64 `json:"done"`               // transactions it answered
	Draining bool   `json:"draining,omitempty"` // it is shutting down and takes no new transactions
	// ContractErrors counts the answers it ran whose contract failed,
	// timeouts included (by kind: gridmesh_gateway_worker_contract_errors_total).
	ContractErrors uint64 `json:"contract_errors"`
}

// NewDispatcher starts watching m's connections for workers.
func NewDispatcher(m *grid.Manager, opts DispatcherOptions) *Dispatcher {
	defaults.Set(&opts.ProbeInterval, 100*time.Millisecond)
	defaults.Set(&opts.MaxProbeInterval, 5*time.Second)
	opts.MaxProbeInterval = max(opts.MaxProbeInterval, opts.ProbeInterval)
	defaults.Set(&opts.ProbeTimeout, 2*time.Second)
	defaults.Set(&opts.SettleTimeout, 10*time.Second)
	defaults.Set(&opts.AnswerGrace, 10*time.Second)
	defaults.Set(&opts.HomeWait, 5*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{opts: opts, changed: make(chan struct{}), homes: newHomes(maxHomes)}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	members := m.MembershipChanged() // before reading the peers: no change is missed
	for _, c := range m.Connections() {
		d.workers = append(d.workers, newWorkerState(c, false))
	}
	d.settle.start(len(d.workers), opts.SettleTimeout)
	for _, w := range d.workers {
		d.wg.Add(1)
		go d.watch(w)
	}
	d.wg.Add(1)
	go d.follow(m, members)
	return d
}

// Close stops watching the connections and waits for the watchers.
func (d *Dispatcher) Close() error {
	d.closeOnce.Do(func() {
		d.cancel()
		d.wg.Wait()
		d.settle.stop()
	})
	return nil
}

// Redispatched returns how many times a transaction was sent to another
// worker because its worker was lost, busy, draining or did not answer.
func (d *Dispatcher) Redispatched() uint64 { return d.redispatched.Load() }

// Rerun returns how many transactions were sent to another worker while
// a worker may have been running them (it was lost or closed mid-call, or
// did not answer in time): each may have run more than once.
func (d *Dispatcher) Rerun() uint64 { return d.rerun.Load() }

// RoutedHome returns how many transactions were sent to the worker that
// remembered running them (after a gateway restart, or after the worker's
// connection was lost mid-call and came back within HomeWait).
func (d *Dispatcher) RoutedHome() uint64 { return d.routedHome.Load() }

// HomeGone returns how many transactions whose worker was lost mid-call
// were re-dispatched without that worker coming back within
// DispatcherOptions.HomeWait.
func (d *Dispatcher) HomeGone() uint64 { return d.homeGone.Load() }

// FromRecord returns how many transactions a worker answered from its
// record of runs, without running them again.
func (d *Dispatcher) FromRecord() uint64 { return d.fromRecord.Load() }

// Workers returns a snapshot of the known workers.
func (d *Dispatcher) Workers() []WorkerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []WorkerStats
	for _, w := range d.workers {
		if w.notWorker || (w.capacity == 0 && !w.up) {
			continue
		}
		out = append(out, WorkerStats{Host: w.conn.Host(), Up: w.up, Capacity: w.capacity, Running: w.running, Done: w.done, Draining: w.draining,
			ContractErrors: w.contract.errorCount()})
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

// watch follows w's connection until Close or the Manager's: it marks the
// worker down when the connection goes down, and asks it for its
// capacity when a session comes up, when a call found it gone or
// draining (w.kick), and, while it is connected but not ready, after a
// backoff from ProbeInterval to MaxProbeInterval.
func (d *Dispatcher) watch(w *workerState) {
	defer d.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var (
		seen  uint64 // the session count at the last probe
		due   bool   // ask again now: kicked or backed off
		delay = backoff.Backoff{Base: d.opts.ProbeInterval, Max: d.opts.MaxProbeInterval}
	)
	for {
		changed := w.conn.StateChanged() // before reading the state: no change is missed
		st := w.conn.Stats()
		switch {
		case st.State != grid.StateConnected:
			d.markDown(w, st.LastError)
			retry.Stop()
			delay.Reset()
			due = false
			if st.State == grid.StateRemoved {
				d.forget(w)
			}
			if st.State == grid.StateClosed || st.State == grid.StateRemoved {
				return // final
			}
		case st.Connects != seen || due:
			if st.Connects != seen {
				delay.Reset() // a new session: back off from the start
			}
			seen, due = st.Connects, false
			if d.probe(w, st.Connects) {
				retry.Stop()
				delay.Reset()
			} else {
				retry.Reset(delay.Next())
			}
		}
		select {
		case <-changed:
		case <-w.kick:
			due = true
		case <-retry.C:
			due = true
		case <-d.ctx.Done():
			return
		}
	}
}

// markDown notes that w's connection is down.
func (d *Dispatcher) markDown(w *workerState, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w.up {
		w.up = false
		d.opts.Logger.Warn("gateway: worker down", "worker", w.conn.Host(), "reason", reason)
		d.broadcastLocked()
	}
}

// probe asks w for its capacity and reports whether it is ready to work.
// Before it counts a worker as up on a new session, it learns the
// transactions the worker remembers (learnRecent).
func (d *Dispatcher) probe(w *workerState, session uint64) bool {
	defer d.settle.probed(&w.probed)
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.ProbeTimeout)
	info, err := wire.InfoCall.Call(ctx, w.conn, &handlers.NoPayload{})
	cancel()
	if err == nil && info.Capacity > 0 {
		d.learnRecent(w, session)
	}
	// A call may have found the old session gone before the grid
	// counted the new one: the answers above may come from a session
	// newer than the one whose remembered IDs were asked for. Then the
	// watcher sees the new session and asks again.
	newer := w.conn.Stats().Connects != session
	d.mu.Lock()
	defer d.mu.Unlock()
	w.up = false
	switch {
	case w.removed || newer:
		return false
	case err == nil && info.Capacity > 0:
		w.capacity, w.up, w.draining, w.notWorker = info.Capacity, true, false, false
		d.opts.Logger.Info("gateway: worker up", "worker", w.conn.Host(), "capacity", info.Capacity, "mode", info.Mode)
		d.broadcastLocked()
		return true
	case err == nil:
		w.notWorker = false
		if info.Draining && !w.draining {
			d.opts.Logger.Info("gateway: worker draining", "worker", w.conn.Host(), "running", info.Running)
		}
		w.draining = info.Draining
	case errors.Is(err, mux.ErrUnknownHandler):
		// Another gateway, a node that is not a worker, or a worker
		// that has not registered its handlers yet: asked again later.
		w.notWorker = true
	}
	return false
}

// wake makes w's watcher ask it again at once; it never blocks.
func (w *workerState) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// pickLocked returns the up worker with the lowest load (running relative
// to capacity) that has room, or nil. Ties go round the workers in turn
// (from the one after the last picked), so that a light load spreads over
// every worker and one that just joined gets work at once.
func (d *Dispatcher) pickLocked() *workerState {
	var best *workerState
	n, at := len(d.workers), 0
	for k := range n {
		i := (d.next + k) % n
		w := d.workers[i]
		if !w.up || w.removed || w.running >= w.capacity {
			continue
		}
		if best == nil || w.running*best.capacity < best.running*w.capacity {
			best, at = w, i
		}
	}
	if best != nil {
		d.next = at + 1
	}
	return best
}

func (d *Dispatcher) reserve(ctx context.Context, id string) (slot, error) {
	w, _, err := d.reserveHome(ctx, id)
	if err != nil {
		return nil, err // not a nil *workerState in a slot
	}
	return w, nil
}

// reserveHome is reserve, and reports whether the worker remembers the
// transaction (its home).
func (d *Dispatcher) reserveHome(ctx context.Context, id string) (*workerState, bool, error) {
	if err := d.settle.wait(ctx); err != nil {
		return nil, false, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		d.mu.Lock()
		if w := d.homes.takeUp(id); w != nil {
			// The worker remembers the transaction: it answers without
			// running it again, and needs no free capacity for that.
			w.running++
			d.mu.Unlock()
			d.routedHome.Add(1)
			return w, true, nil
		}
		if w := d.pickLocked(); w != nil {
			w.running++
			d.mu.Unlock()
			return w, false, nil
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// release gives back w's slot after a call: ok if w answered it, lost
// if w's connection was lost during it, refused if w is draining.
func (d *Dispatcher) release(w *workerState, ok, lost, refused bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w.running--
	if ok {
		w.done++
	}
	if refused {
		w.draining = true
	}
	if (lost || refused) && w.up {
		w.up = false // not picked again until its watcher finds it ready
		w.wake()
	}
	d.broadcastLocked()
}

func (d *Dispatcher) run(ctx context.Context, s slot, req *wire.TxRequest) (*wire.TxResult, error) {
	w := s.(*workerState)
	retry := backoff.Backoff{Base: retryBase, Max: retryMax}
	rerun := false // counted in d.rerun: once per transaction
	mayHaveRun := func() {
		if !rerun {
			rerun = true
			d.rerun.Add(1)
		}
	}
	lostMidCall := false // w's connection was lost while it had the transaction
	var lostFor uint64   // then: the session whose remembered IDs homes held
	span := trace.SpanFromContext(ctx)
	for attempts := 1; ; attempts++ {
		d.mu.Lock()
		learned := w.recentFor // what w remembers was learned on this session
		d.mu.Unlock()
		start := time.Now()
		res, err := d.call(ctx, w, req)
		refused := err == nil && res.Draining
		lost := errors.Is(err, grid.ErrDisconnected)
		d.release(w, err == nil && !refused, lost, refused)
		if err == nil && !refused {
			if res.FromRecord {
				d.fromRecord.Add(1)
			} else {
				w.contract.observe(res, time.Since(start))
			}
			noteAnswer(span, w, res, attempts)
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err() // given up: Prime delivers it again
		}
		if errors.Is(err, mux.ErrMessageTooLarge) {
			// Too large to send, or its result too large to answer:
			// another attempt fares no better.
			return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		d.redispatched.Add(1)
		noteRedispatch(span, w, refused, err)
		switch {
		case refused && res.Abandoned:
			mayHaveRun()
			d.opts.Logger.Warn("gateway: worker closed mid-transaction, re-dispatching (it may run twice)",
				"transaction_id", req.ID, "worker", w.conn.Host())
		case refused: // it did not run: not a failure
			d.opts.Logger.Info("gateway: worker draining, re-dispatching",
				"transaction_id", req.ID, "worker", w.conn.Host())
		case lost && errors.Is(err, grid.ErrNotSent): // it never left the gateway
			d.opts.Logger.Info("gateway: worker unavailable, re-dispatching",
				"transaction_id", req.ID, "worker", w.conn.Host(), "err", err)
		case lost:
			// Its run may go on without us: counted as a rerun below
			// unless it goes back to w, which remembers it.
			lostMidCall, lostFor = true, learned
			d.opts.Logger.Warn("gateway: worker lost mid-transaction, re-dispatching (to it if it comes back)",
				"transaction_id", req.ID, "worker", w.conn.Host(), "err", err)
		case errors.Is(err, mux.ErrBusy): // the worker had no free handler slot
			if !sleepCtx(ctx, busyRetryDelay) {
				return nil, ctx.Err()
			}
		default:
			if errors.Is(err, context.DeadlineExceeded) {
				mayHaveRun()
			}
			delay := retry.Next()
			d.opts.Logger.Warn("gateway: worker gave no answer, re-dispatching",
				"transaction_id", req.ID, "worker", w.conn.Host(), "err", err, "retry_in", delay)
			if !sleepCtx(ctx, delay) {
				return nil, ctx.Err()
			}
		}
		var next *workerState
		home := false
		if lostMidCall {
			next = d.awaitHome(ctx, w, lostFor, req.ID)
			if ctx.Err() != nil {
				if next != nil {
					d.release(next, false, false, false)
				}
				return nil, ctx.Err() // given up: Prime delivers it again
			}
			home = next != nil
		}
		if next == nil {
			var rerr error
			next, home, rerr = d.reserveHome(ctx, req.ID)
			if rerr != nil {
				return nil, rerr
			}
		}
		if lostMidCall && !home {
			d.opts.Logger.Warn("gateway: a lost worker's transaction goes to a worker that does not remember it (it may run twice)",
				"transaction_id", req.ID, "lost", w.conn.Host(), "next", next.conn.Host())
			mayHaveRun()
		}
		lostMidCall = false
		w = next
	}
}

// call sends req to w, waiting for its answer up to AnswerGrace past the
// transaction's own deadline, which the worker enforces.
func (d *Dispatcher) call(ctx context.Context, w *workerState, req *wire.TxRequest) (*wire.TxResult, error) {
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout)+d.opts.AnswerGrace)
		defer cancel()
	}
	return wire.RunCall.Call(ctx, w.conn, req)
}

// The backoff between attempts at a transaction whose worker failed to
// answer it (an error other than a lost connection or a busy worker).
const (
	retryBase = 50 * time.Millisecond
	retryMax  = 5 * time.Second
)

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
