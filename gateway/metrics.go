package gateway

import (
	"io"
	"net/http"

	"github.com/gridmesh/gridmesh/internal/promtext"
)

// Paths to serve a gateway node's counters at beside the grid's own
// (grid.DefaultStatsPath, grid.DefaultMetricsPath), for a library user.
// The gridmesh command serves them on its operations port instead: the
// metrics within /metrics, the stats within /stats.
const (
	// MetricsPath serves Metrics.Handler: the Prometheus text format.
	MetricsPath = "/gridmesh/gateway/metrics"
	// StatsPath serves Metrics.StatsHandler: a NodeStats as JSON.
	StatsPath = "/gridmesh/gateway/stats"
)

// Metrics exposes a gateway node's counters over HTTP, as Prometheus text
// (Handler) and as JSON (StatsHandler): the Gateway's and its
// Dispatcher's, per worker. A nil part is left out.
//
// Its methods may be called concurrently; the parts must not change once
// it serves.
type Metrics struct {
	Gateway    *Gateway
	Dispatcher *Dispatcher
}

// NodeStats is a snapshot of a gateway node: what StatsHandler serves. A
// part the node does not have is nil.
type NodeStats struct {
	Gateway  *Stats         `json:"gateway,omitempty"`
	Dispatch *DispatchStats `json:"dispatch,omitempty"`
}

// DispatchStats is a Dispatcher's view of its workers.
type DispatchStats struct {
	Redispatched uint64        `json:"redispatched"` // times a transaction was sent to another worker: its worker was lost, busy, draining or gave no answer
	Rerun        uint64        `json:"rerun"`        // transactions sent to another worker while one may have been running them: they may have run twice
	RoutedHome   uint64        `json:"routed_home"`  // transactions sent to the worker that remembered running them (after a gateway restart or a lost connection)
	HomeGone     uint64        `json:"home_gone"`    // transactions whose worker was lost mid-call and did not come back within HomeWait
	FromRecord   uint64        `json:"from_record"`  // transactions a worker answered from its record, without running them again
	Workers      []WorkerStats `json:"workers"`
}

// Stats returns a snapshot of the parts that are set.
func (m *Metrics) Stats() NodeStats {
	var st NodeStats
	if m.Gateway != nil {
		s := m.Gateway.Stats()
		st.Gateway = &s
	}
	if m.Dispatcher != nil {
		d := m.Dispatcher
		st.Dispatch = &DispatchStats{
			Redispatched: d.Redispatched(), Rerun: d.Rerun(), RoutedHome: d.RoutedHome(), FromRecord: d.FromRecord(),
			HomeGone: d.HomeGone(), Workers: d.Workers(),
		}
		if st.Dispatch.Workers == nil {
			st.Dispatch.Workers = []WorkerStats{}
		}
	}
	return st
}

// StatsHandler answers GET with Stats as JSON.
func (m *Metrics) StatsHandler() http.Handler {
	return promtext.JSONHandler(m.Stats)
}

// Handler answers GET with WriteMetrics' exposition in the Prometheus
// text format (version 0.0.4): counters end in _total, the dispatcher's
// per-worker series are labelled worker="<host>", latencies are
// histograms in seconds. It needs no Prometheus library.
func (m *Metrics) Handler() http.Handler {
	return promtext.Handler(promtext.ContentType, m.WriteMetrics)
}

// WriteMetrics writes what Handler serves to w: the counters and
// gauges, then the histograms (transaction latency, queue wait, and per
// worker contract duration and errors).
func (m *Metrics) WriteMetrics(w io.Writer) {
	writeMetrics(w, m.Stats())
	if m.Gateway != nil {
		lm := m.Gateway.metrics
		promtext.WriteHistogram(w, "gridmesh_gateway_transaction_seconds",
			"Latency of the transactions run and answered, from their receipt from Prime to their answer's Send (those answered from the journal not included).",
			promtext.HistogramSeries{Snapshot: lm.tx.Snapshot()})
		promtext.WriteHistogram(w, "gridmesh_gateway_queue_wait_seconds",
			"How long received transactions waited for a worker with room (and for room among the results waiting to be sent).",
			promtext.HistogramSeries{Snapshot: lm.queue.Snapshot()})
	}
	if m.Dispatcher != nil {
		m.Dispatcher.writeWorkerMetrics(w)
	}
}

var gatewayFamilies = []promtext.Family[*Stats]{
	promtext.Counter("gridmesh_gateway_received_total", "Requests received from Prime, redeliveries included.",
		func(s *Stats) float64 { return float64(s.Received) }),
	promtext.Counter("gridmesh_gateway_started_total", "Transactions run (handed to the workers).",
		func(s *Stats) float64 { return float64(s.Started) }),
	promtext.Counter("gridmesh_gateway_from_journal_total", "Redelivered transactions answered from the journal, not run again.",
		func(s *Stats) float64 { return float64(s.FromJournal) }),
	promtext.Counter("gridmesh_gateway_duplicates_total", "Redelivered transactions dropped: running, or their answer waiting to be sent.",
		func(s *Stats) float64 { return float64(s.Duplicates) }),
	promtext.Counter("gridmesh_gateway_ignored_total", "Requests received while shutting down, left to Prime to redeliver.",
		func(s *Stats) float64 { return float64(s.Ignored) }),
	promtext.Counter("gridmesh_gateway_journaled_total", "Results written to the journal.",
		func(s *Stats) float64 { return float64(s.Journaled) }),
	promtext.Counter("gridmesh_gateway_journal_errors_total", "Results the journal failed to write (sent all the same).",
		func(s *Stats) float64 { return float64(s.JournalErrors) }),
	promtext.Gauge("gridmesh_gateway_journal_marks_pending", "Sent marks waiting to be written to the journal.",
		func(s *Stats) float64 { return float64(s.MarksPending) }),
	promtext.Counter("gridmesh_gateway_journal_marks_dropped_total", "Sent marks dropped because the journal's disk was too far behind; their results stay until journal_max_age.",
		func(s *Stats) float64 { return float64(s.MarksDropped) }),
	promtext.Counter("gridmesh_gateway_sent_total", "Responses sent to Prime.",
		func(s *Stats) float64 { return float64(s.Sent) }),
	promtext.Counter("gridmesh_gateway_send_errors_total", "Failed sends to Prime (each tore its stream down).",
		func(s *Stats) float64 { return float64(s.SendErrors) }),
	promtext.Counter("gridmesh_gateway_failed_total", "Transactions answered with an error of the gateway's: a result too large for Prime.",
		func(s *Stats) float64 { return float64(s.Failed) }),
	promtext.Counter("gridmesh_gateway_contract_errors_total", "Answers carrying the contract's own error (timeouts not included).",
		func(s *Stats) float64 { return float64(s.ContractErrors) }),
	promtext.Counter("gridmesh_gateway_contract_timeouts_total", "Answers for a contract that ran past transaction_timeout.",
		func(s *Stats) float64 { return float64(s.ContractTimeouts) }),
	promtext.Counter("gridmesh_gateway_results_too_large_total", "Results over max_result_bytes, answered with an error instead (counted in failed too).",
		func(s *Stats) float64 { return float64(s.TooLarge) }),
	promtext.Counter("gridmesh_gateway_throttled_total", "Times the gateway stopped reading from Prime because too many results waited to be sent.",
		func(s *Stats) float64 { return float64(s.Throttled) }),
	promtext.Counter("gridmesh_gateway_handed_back_total", "Transactions given up at shutdown, left to Prime to redeliver.",
		func(s *Stats) float64 { return float64(s.HandedBack) }),
	promtext.Counter("gridmesh_gateway_streams_total", "Streams opened to Prime.",
		func(s *Stats) float64 { return float64(s.Streams) }),
	promtext.Gauge("gridmesh_gateway_prime_connected", "1 while a stream to Prime is up, else 0.",
		func(s *Stats) float64 { return promtext.Bool(s.Connected) }),
	promtext.Gauge("gridmesh_gateway_in_flight", "Transactions running or whose answer waits to be sent.",
		func(s *Stats) float64 { return float64(s.InFlight) }),
}

var dispatchFamilies = []promtext.Family[*DispatchStats]{
	promtext.Counter("gridmesh_gateway_redispatched_total", "Times a transaction was sent to another worker: its worker was lost, busy, draining or gave no answer.",
		func(s *DispatchStats) float64 { return float64(s.Redispatched) }),
	promtext.Counter("gridmesh_gateway_rerun_total", "Transactions sent to another worker while one may have been running them: they may have run twice.",
		func(s *DispatchStats) float64 { return float64(s.Rerun) }),
	promtext.Counter("gridmesh_gateway_routed_home_total", "Transactions sent to the worker that remembered running them, after a gateway restart or a lost connection.",
		func(s *DispatchStats) float64 { return float64(s.RoutedHome) }),
	promtext.Counter("gridmesh_gateway_home_gone_total", "Transactions whose worker was lost mid-call and did not come back within the home wait: sent elsewhere.",
		func(s *DispatchStats) float64 { return float64(s.HomeGone) }),
	promtext.Counter("gridmesh_gateway_from_record_total", "Transactions a worker answered from its record of runs, without running them again.",
		func(s *DispatchStats) float64 { return float64(s.FromRecord) }),
}

// perWorkerFamilies are labelled worker="<host>".
var perWorkerFamilies = []promtext.Family[WorkerStats]{
	promtext.Gauge("gridmesh_gateway_worker_up", "1 while the worker is connected and answered its probe, else 0.",
		func(w WorkerStats) float64 { return promtext.Bool(w.Up) }),
	promtext.Gauge("gridmesh_gateway_worker_draining", "1 while the worker said it is draining, else 0.",
		func(w WorkerStats) float64 { return promtext.Bool(w.Draining) }),
	promtext.Gauge("gridmesh_gateway_worker_capacity", "Transactions the worker runs at once, as it advertised.",
		func(w WorkerStats) float64 { return float64(w.Capacity) }),
	promtext.Gauge("gridmesh_gateway_worker_running", "Transactions the gateway has running on the worker.",
		func(w WorkerStats) float64 { return float64(w.Running) }),
	promtext.Counter("gridmesh_gateway_worker_done_total", "Transactions the worker answered (since the gateway started).",
		func(w WorkerStats) float64 { return float64(w.Done) }),
}

// writeMetrics writes the parts of st that are set.
func writeMetrics(w io.Writer, st NodeStats) {
	if st.Gateway != nil {
		promtext.WriteFamilies(w, gatewayFamilies, st.Gateway)
	}
	if st.Dispatch != nil {
		promtext.WriteFamilies(w, dispatchFamilies, st.Dispatch)
		promtext.WriteLabelled(w, perWorkerFamilies, "worker", st.Dispatch.Workers, func(ws WorkerStats) string { return ws.Host })
	}
}
