package worker

import (
	"io"
	"net/http"

	"github.com/gridmesh/gridmesh/internal/promtext"
)

// Paths to serve a worker node's counters at beside the grid's own
// (grid.DefaultStatsPath, grid.DefaultMetricsPath), for a library user.
// The gridmesh command serves them on its operations port instead: the
// metrics within /metrics, the stats within /stats.
const (
	// MetricsPath serves Metrics.Handler: the Prometheus text format.
	MetricsPath = "/gridmesh/worker/metrics"
	// StatsPath serves Metrics.StatsHandler: a NodeStats as JSON.
	StatsPath = "/gridmesh/worker/stats"
)

// Metrics exposes a worker node's counters over HTTP, as Prometheus text
// (Handler) and as JSON (StatsHandler): the Worker's and, in mode
// process, its ProcessPool's. A nil part is left out.
//
// Its methods may be called concurrently; the parts must not change once
// it serves.
type Metrics struct {
	Worker    *Worker
	Processes *ProcessPool
}

// NodeStats is a snapshot of a worker node: what StatsHandler serves. A
// part the node does not have is nil.
type NodeStats struct {
	Worker    *Status       `json:"worker,omitempty"`
	Processes *ProcessStats `json:"processes,omitempty"`
}

// Status is a Worker's own count of its transactions.
type Status struct {
	Capacity int    `json:"capacity"`
	Running  int    `json:"running"`
	Done     uint64 `json:"done"`
	Refused  uint64 `json:"refused"`  // transactions refused while draining or closed (run elsewhere)
	Draining bool   `json:"draining"` // shutting down: running what it has, taking nothing new

	FromRecord       uint64 `json:"from_record"`       // transactions sent again, joined to their run or answered from the record
	ContractErrors   uint64 `json:"contract_errors"`   // results whose contract failed (timeouts not included)
	ContractTimeouts uint64 `json:"contract_timeouts"` // results whose contract ran past its deadline
	Recorded         int    `json:"recorded"`          // runs remembered now, running and finished
	RecordedBytes    int    `json:"recorded_bytes"`    // bytes of the finished runs' results remembered
}

// Status returns a snapshot of the worker's counts.
func (w *Worker) Status() Status {
	runs, bytes := w.rec.size()
	return Status{
		Capacity: w.Capacity(), Running: w.Running(), Done: w.Done(), Refused: w.Refused(), Draining: w.Draining(),
		FromRecord: w.fromRecord.Load(), ContractErrors: w.contractErrors.Load(), ContractTimeouts: w.contractTimeouts.Load(),
		Recorded: runs, RecordedBytes: bytes,
	}
}

// Stats returns a snapshot of the parts that are set.
func (m *Metrics) Stats() NodeStats {
	var st NodeStats
	if m.Worker != nil {
		s := m.Worker.Status()
		st.Worker = &s
	}
	if m.Processes != nil {
		s := m.Processes.Stats()
		st.Processes = &s
	}
	return st
}

// StatsHandler answers GET with Stats as JSON.
func (m *Metrics) StatsHandler() http.Handler {
	return promtext.JSONHandler(m.Stats)
}

// Handler answers GET with Stats in the Prometheus text exposition
// format (version 0.0.4); counters end in _total. It needs no Prometheus
// library.
func (m *Metrics) Handler() http.Handler {
	return promtext.Handler(promtext.ContentType, m.WriteMetrics)
}

// WriteMetrics writes what Handler serves to w.
func (m *Metrics) WriteMetrics(w io.Writer) { writeMetrics(w, m.Stats()) }

// writeMetrics writes the parts of st that are set.
func writeMetrics(w io.Writer, st NodeStats) {
	if st.Worker != nil {
		promtext.WriteFamilies(w, workerFamilies, st.Worker)
	}
	if st.Processes != nil {
		promtext.WriteFamilies(w, processFamilies, st.Processes)
	}
}

var workerFamilies = []promtext.Family[*Status]{
	promtext.Gauge("gridmesh_worker_capacity", "Transactions this worker runs at once.",
		func(s *Status) float64 { return float64(s.Capacity) }),
	promtext.Gauge("gridmesh_worker_running", "Transactions running on this worker.",
		func(s *Status) float64 { return float64(s.Running) }),
	promtext.Counter("gridmesh_worker_done_total", "Transactions this worker finished.",
		func(s *Status) float64 { return float64(s.Done) }),
	promtext.Counter("gridmesh_worker_refused_total", "Transactions refused while draining, left to the gateway to run elsewhere.",
		func(s *Status) float64 { return float64(s.Refused) }),
	promtext.Counter("gridmesh_worker_from_record_total", "Transactions sent again that were joined to their run or answered from the record, not run twice.",
		func(s *Status) float64 { return float64(s.FromRecord) }),
	promtext.Counter("gridmesh_worker_contract_errors_total", "Results whose contract failed (timeouts not included).",
		func(s *Status) float64 { return float64(s.ContractErrors) }),
	promtext.Counter("gridmesh_worker_contract_timeouts_total", "Results whose contract ran past its deadline.",
		func(s *Status) float64 { return float64(s.ContractTimeouts) }),
	promtext.Gauge("gridmesh_worker_recorded_runs", "Runs remembered by transaction ID, running and finished.",
		func(s *Status) float64 { return float64(s.Recorded) }),
	promtext.Gauge("gridmesh_worker_recorded_bytes", "Bytes of the finished runs' results remembered.",
		func(s *Status) float64 { return float64(s.RecordedBytes) }),
	promtext.Gauge("gridmesh_worker_draining", "1 while the worker drains before shutting down, else 0.",
		func(s *Status) float64 { return promtext.Bool(s.Draining) }),
}

var processFamilies = []promtext.Family[*ProcessStats]{
	promtext.Gauge("gridmesh_worker_processes", "Contract process slots.",
		func(s *ProcessStats) float64 { return float64(s.Processes) }),
	promtext.Gauge("gridmesh_worker_processes_running", "Contract processes up.",
		func(s *ProcessStats) float64 { return float64(s.Running) }),
	promtext.Gauge("gridmesh_worker_process_in_flight", "Transactions sent to contract processes and not yet answered.",
		func(s *ProcessStats) float64 { return float64(s.InFlight) }),
	promtext.Counter("gridmesh_worker_process_starts_total", "Contract processes started, the first ones included.",
		func(s *ProcessStats) float64 { return float64(s.Starts) }),
	promtext.Counter("gridmesh_worker_process_ended_total", "Contract processes that ended other than at shutdown, or failed to start again.",
		func(s *ProcessStats) float64 { return float64(s.Ended) }),
	promtext.Counter("gridmesh_worker_process_protocol_errors_total", "Contract processes killed for breaking the line protocol.",
		func(s *ProcessStats) float64 { return float64(s.ProtocolErrs) }),
	promtext.Counter("gridmesh_worker_process_wedged_total", "Contract processes killed for answering none of WedgedAfter transactions in a row in time.",
		func(s *ProcessStats) float64 { return float64(s.Wedged) }),
	promtext.Counter("gridmesh_worker_process_late_answers_total", "Answers dropped because their caller had given up.",
		func(s *ProcessStats) float64 { return float64(s.LateAnswers) }),
	promtext.Counter("gridmesh_worker_process_cancelled_total", "Transactions given up on and cancelled on their contract process with a cancel line.",
		func(s *ProcessStats) float64 { return float64(s.Cancelled) }),
}
