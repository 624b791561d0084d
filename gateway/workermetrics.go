package gateway

import (
	"io"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/promtext"
)

// newWorkerState returns the state of a peer the Dispatcher starts
// watching; probed: it does not count towards the first settle.
func newWorkerState(c *grid.Connection, probed bool) *workerState {
	return &workerState{conn: c, kick: make(chan struct{}, 1), probed: probed, contract: newWorkerMetrics()}
}

// workerMetrics are the contract metrics of one worker, as its answers
// report them. Its methods may be called concurrently.
type workerMetrics struct {
	duration *promtext.Histogram
	errors   [4]atomic.Uint64 // by kind, in the order of wire.Kinds
}

func newWorkerMetrics() *workerMetrics {
	return &workerMetrics{duration: promtext.NewHistogram(promtext.LatencyBuckets)}
}

// observe counts an answer the worker ran for the gateway: its contract's
// run time (the call's, from a worker that does not report it) and its
// kind of error.
func (m *workerMetrics) observe(res *wire.TxResult, call time.Duration) {
	d := time.Duration(res.Duration)
	if d <= 0 {
		d = call
	}
	m.duration.ObserveDuration(d)
	if kind := wire.ErrorKindOf(res); kind != "" {
		for i, k := range wire.Kinds {
			if k == kind {
				m.errors[i].Add(1)
			}
		}
	}
}

// errorCount returns the errors of every kind.
func (m *workerMetrics) errorCount() uint64 {
	var n uint64
	for i := range m.errors {
		n += m.errors[i].Load()
	}
	return n
}

// Names of the per-worker contract metrics.
const (
	metricWorkerContract       = "gridmesh_gateway_worker_contract_seconds"
	metricWorkerContractErrors = "gridmesh_gateway_worker_contract_errors_total"
)

// writeWorkerMetrics writes the per-worker contract histograms and error
// counters of the workers that Workers lists, labelled worker="<host>"
// (and kind, one of wire.Kinds).
func (d *Dispatcher) writeWorkerMetrics(w io.Writer) {
	type row struct {
		host string
		m    *workerMetrics
	}
	var rows []row
	d.mu.Lock()
	for _, ws := range d.workers {
		if ws.notWorker || (ws.capacity == 0 && !ws.up) {
			continue
		}
		rows = append(rows, row{ws.conn.Host(), ws.contract})
	}
	d.mu.Unlock()
	series := make([]promtext.HistogramSeries, len(rows))
	for i, r := range rows {
		series[i] = promtext.HistogramSeries{Labels: []string{"worker", r.host}, Snapshot: r.m.duration.Snapshot()}
	}
	promtext.WriteHistogram(w, metricWorkerContract,
		"How long the worker's contract ran, per transaction it ran for the gateway (as the worker measured it).", series...)
	promtext.WriteHeader(w, metricWorkerContractErrors, "counter",
		"Transactions the worker ran whose contract failed, by kind: error, timeout, panic, process (the contract process failed).")
	for _, r := range rows {
		for i, k := range wire.Kinds {
			promtext.WriteSample(w, metricWorkerContractErrors, float64(r.m.errors[i].Load()), "worker", r.host, "kind", k)
		}
	}
}

// noteAnswer marks the dispatch span with the worker that answered.
func noteAnswer(span trace.Span, w *workerState, res *wire.TxResult, attempts int) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrWorker.String(w.conn.Host()), AttrAttempts.Int(attempts))
	if res.FromRecord {
		span.SetAttributes(AttrFromRecord.Bool(true))
	}
}

// noteRedispatch adds a re-dispatch event to the dispatch span: why the
// transaction leaves worker w.
func noteRedispatch(span trace.Span, w *workerState, refused bool, err error) {
	if !span.IsRecording() {
		return
	}
	reason := "draining"
	if !refused {
		reason = err.Error()
	}
	span.AddEvent(EventRedispatch, trace.WithAttributes(AttrWorker.String(w.conn.Host()), AttrReason.String(reason)))
}
