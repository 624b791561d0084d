package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/defaults"
)

// Modes of a worker's contract (Options.Mode), as a worker reports them
// to the gateway for its logs.
const (
	ModeFunc    = "func"    // a Go function in the worker's process
	ModeExec    = "exec"    // a command per transaction (ExecContract)
	ModeProcess = "process" // long-lived supervised processes (StartProcesses)
)

// Options configure a Worker.
type Options struct {
	// Contract runs each transaction. Required. ExecContract makes one that
	// runs a command per transaction; a ProcessPool's Contract method sends
	// it to a long-lived process.
	Contract contract.Func
	// Capacity is how many transactions run at once; the worker advertises
	// it to the gateway, which never sends more. Default 1.
	Capacity int
	// Mode names the kind of contract for logs ("func", "exec",
	// "process"). Default "func".
	Mode string
	// RecordRuns bounds how many finished runs the worker remembers, with
	// their results, beside those running; RecordBytes bounds those
	// results' bytes and RecordTTL their age. A transaction sent again
	// while it is remembered (its gateway died and Prime delivered it to
	// the next one) is joined to its run or answered from the record, not
	// run twice. Defaults DefaultRecordRuns, DefaultRecordBytes,
	// DefaultRecordTTL. The record's memory is at most RecordBytes plus
	// about 200 bytes per run remembered.
	RecordRuns  int
	RecordBytes int
	RecordTTL   time.Duration
	// TracerProvider traces the transactions: a span per transaction
	// (SpanWorker) around one for its contract's run (SpanContract),
	// whose trace context the contract is handed (TRACEPARENT, PROCESS.md,
	// contract.TraceParent). The worker's span is a child of the span in
	// the grid handler's context, so that it joins the gateway's trace.
	// nil (the default): no spans, at no cost; a span context that comes
	// with the call is still handed to the contract.
	TracerProvider trace.TracerProvider
	// Logger receives a WARN line per transaction whose contract failed
	// or timed out, with its ID, at most 10 lines per 10 seconds (the
	// next line says how many were not logged); the counters
	// (Status.ContractErrors, ContractTimeouts) count them all. Default:
	// discard.
	Logger *slog.Logger
}

// Worker serves transactions to the gateways of its grid. It registers
// wire.HandlerInfo and wire.HandlerRun on a grid Manager; the gateway finds it by
// calling wire.HandlerInfo on every peer that connects. Start it with its node,
// Start or Listen, so that its handlers are there before any
// gateway can call them.
//
// A run outlives the call that started it if that call's session ends
// (the gateway died or its connection broke): the worker finishes it and
// records the result, which the gateway gets when it sends the
// transaction again. A call its caller cancels cancels its run.
//
// To shut a worker down without running any transaction twice, call
// Drain before closing its node: it refuses new transactions (the gateway
// sends them to another worker) and waits for the running ones. Close,
// after the node's Close, gives up what still runs.
//
// All methods may be called concurrently.
type Worker struct {
	opts   Options
	local  string        // the node's grid name, for spans
	tracer trace.Tracer  // nil: no tracing
	m      *grid.Manager // set once, before the Worker is returned
	sem    chan struct{}
	rec    *record
	base   context.Context // cancelled by Close: runs still going are given up
	close  context.CancelCauseFunc

	done, refused, fromRecord, contractErrors, contractTimeouts atomic.Uint64

	failLog failLog

	mu       sync.Mutex
	draining bool
	gateways map[string]bool // peers that asked for the worker's info
	accepted int             // run calls taken and not yet returned
	idle     chan struct{}   // made by Drain; closed once accepted is 0 while draining
}

// New registers a worker's handlers on m. A gateway that reached m
// before (a Manager dials its peers, and may be served, from the start)
// found no handler, and asks again after a backoff
// (DispatcherOptions.ProbeInterval); Start registers them before
// the node starts, so the gateway's first ask finds them.
func New(m *grid.Manager, opts Options) (*Worker, error) {
	w, err := newWorker(m.Registry(), m.Local(), opts)
	if err != nil {
		return nil, err
	}
	w.attach(m)
	return w, nil
}

// Start starts a worker node on ln: it registers the worker's
// handlers in gridOpts.Registry (a new registry if nil), then starts the
// node serving from it (StartNode), so that a gateway's first call, which
// may come as soon as the node dials or accepts it, finds them. On error
// ln is closed.
func Start(ctx context.Context, ln net.Listener, gridOpts grid.Options, opts Options) (*grid.Node, *Worker, error) {
	if gridOpts.Registry == nil {
		gridOpts.Registry = new(handlers.Registry)
	}
	w, err := newWorker(gridOpts.Registry, gridOpts.Local, opts)
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	n, err := grid.StartNode(ctx, ln, gridOpts)
	if err != nil {
		return nil, nil, err
	}
	w.attach(n.Manager)
	return n, w, nil
}

// Listen listens on addr and starts a worker node there; see
// Start.
func Listen(ctx context.Context, addr string, gridOpts grid.Options, opts Options) (*grid.Node, *Worker, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("worker: listen %s: %w", addr, err)
	}
	return Start(ctx, ln, gridOpts, opts)
}

// attach sets the worker's Manager; the worker closes with it.
func (w *Worker) attach(m *grid.Manager) {
	w.m = m
	context.AfterFunc(m.Context(), func() { _ = w.Close() })
}

// newWorker checks opts and registers the handlers of a worker, whose
// node is named local, on reg; the caller sets its Manager.
func newWorker(reg *handlers.Registry, local string, opts Options) (*Worker, error) {
	if opts.Contract == nil {
		return nil, configError("Options.Contract", "is required")
	}
	if opts.Capacity < 0 {
		return nil, configError("Options.Capacity", "must not be negative")
	}
	defaults.Set(&opts.Capacity, 1)
	if opts.Mode == "" {
		opts.Mode = ModeFunc
	}
	if opts.RecordRuns < 0 || opts.RecordBytes < 0 || opts.RecordTTL < 0 {
		return nil, configError("Options.RecordRuns, RecordBytes, RecordTTL", "must not be negative")
	}
	defaults.Set(&opts.RecordRuns, DefaultRecordRuns)
	defaults.Set(&opts.RecordBytes, DefaultRecordBytes)
	defaults.Set(&opts.RecordTTL, DefaultRecordTTL)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &Worker{
		opts: opts, local: local, sem: make(chan struct{}, opts.Capacity),
		rec: newRecord(opts.RecordRuns, opts.RecordBytes, opts.RecordTTL),
	}
	if opts.TracerProvider != nil {
		w.tracer = opts.TracerProvider.Tracer(TracerName)
	}
	w.base, w.close = context.WithCancelCause(context.Background())
	if err := wire.InfoCall.Register(reg, w.info); err != nil {
		return nil, err
	}
	if err := wire.RunCall.Register(reg, w.runTraced); err != nil {
		return nil, err
	}
	if err := wire.RecentCall.Register(reg, w.recent); err != nil {
		return nil, err
	}
	return w, nil
}

// Capacity returns how many transactions the worker runs at once.
func (w *Worker) Capacity() int { return w.opts.Capacity }

// Running returns the number of transactions running now.
func (w *Worker) Running() int { return len(w.sem) }

// Done returns the number of transactions this worker has finished.
func (w *Worker) Done() uint64 { return w.done.Load() }

// Refused returns the number of transactions refused while draining or
// after Close.
func (w *Worker) Refused() uint64 { return w.refused.Load() }

// closed reports whether Close was called (or the worker's Manager
// closed).
func (w *Worker) closed() bool { return w.base.Err() != nil }

// Close gives up the runs still going: their contracts are cancelled and
// their calls answered as refused (wire.TxResult.Draining), so that a
// gateway still connected runs them elsewhere; none is recorded. From
// Close on, the worker runs nothing: it refuses every transaction sent to
// it without starting its contract, and wire.HandlerInfo answers
// capacity 0 with Draining set, so that a gateway sends it nothing more
// while its node is still up. Closing the worker's Manager (its node)
// closes the worker too. Call it after Drain, to give up what still runs
// before the node closes. It is idempotent and returns nil.
func (w *Worker) Close() error {
	w.close(errClosing)
	return nil
}

// Draining reports whether Drain was called.
func (w *Worker) Draining() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.draining
}

// Drain stops the worker taking transactions and waits for the ones it
// has to finish. From the call on, wire.HandlerRun answers every new
// transaction, without running it, with a wire.TxResult whose Draining is set
// (wire.ErrDraining's text in Error): the gateway sends it to another worker
// and does not count it as failed. wire.HandlerInfo answers capacity 0 with
// Draining set. Drain returns nil once the transactions taken before it
// have finished and their answers are queued for the gateway, or ctx's
// error if ctx ends first. It cannot be undone; calling it again waits
// again. Close the node afterwards: transactions still running then fail
// on the gateway with grid.ErrDisconnected and run again elsewhere.
func (w *Worker) Drain(ctx context.Context) error {
	w.mu.Lock()
	if !w.draining {
		w.draining = true
		w.idle = make(chan struct{})
		if w.accepted == 0 {
			close(w.idle)
		}
	}
	idle := w.idle
	w.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
		return fmt.Errorf("worker: drain: %d transactions still running: %w", w.inFlight(), ctx.Err())
	}
	return w.settle(ctx)
}

// inFlight returns the number of run calls taken and not returned.
func (w *Worker) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.accepted
}

// settleStep is the pause between settle's looks at the grid.
const settleStep = 5 * time.Millisecond

// settle waits until every answer the grid owes its peers is queued
// (mux.Stats.Unanswered: a transaction that has returned has its answer
// queued just after) and the queues are written out, so that closing the
// node loses no answer.
func (w *Worker) settle(ctx context.Context) error {
	t := time.NewTicker(settleStep)
	defer t.Stop()
	for {
		if st := w.m.Stats(); st.Unanswered == 0 && st.QueuedBytes == 0 {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("worker: drain: answers not sent: %w", ctx.Err())
		}
	}
}

func (w *Worker) info(ctx context.Context, _ *handlers.NoPayload) (*wire.WorkerInfo, error) {
	if host, ok := grid.PeerFromContext(ctx); ok {
		w.noteGateway(host)
	}
	info := &wire.WorkerInfo{Capacity: w.opts.Capacity, Running: w.Running(), Mode: w.opts.Mode}
	if w.Draining() || w.closed() {
		info.Capacity, info.Draining = 0, true
	}
	return info, nil
}

// take counts a transaction in, unless the worker is draining or closed.
func (w *Worker) take() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.draining || w.closed() {
		return false
	}
	w.accepted++
	return true
}

// leave counts a transaction out.
func (w *Worker) leave() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.accepted--
	if w.draining && w.accepted == 0 {
		close(w.idle)
	}
}
