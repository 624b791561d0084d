package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Paths where the gridmesh command serves a node's gateway and worker
// counters, beside the grid's own (grid.DefaultStatsPath,
// grid.DefaultMetricsPath).
const (
	// MetricsPath serves Metrics.Handler: the Prometheus text format.
	MetricsPath = "/gridmesh/gateway/metrics"
	// StatsPath serves Metrics.StatsHandler: a NodeStats as JSON.
	StatsPath = "/gridmesh/gateway/stats"
)

// Metrics exposes the counters of a node's gateway parts over HTTP, as
// Prometheus text (Handler) and as JSON (StatsHandler). Set the parts the
// node has; nil ones are left out. A gateway node sets Gateway and
// Dispatcher, a worker node Worker and, in mode process, Processes.
//
// Its methods may be called concurrently; the parts must not change once
// it serves.
type Metrics struct {
	Gateway    *Gateway
	Dispatcher *Dispatcher
	Worker     *Worker
	Processes  *ProcessPool
}

// NodeStats is a snapshot of a node's gateway parts: what StatsHandler
// serves. A part the node does not have is nil.
type NodeStats struct {
	Gateway   *Stats         `json:"gateway,omitempty"`
	Dispatch  *DispatchStats `json:"dispatch,omitempty"`
	Worker    *WorkerStatus  `json:"worker,omitempty"`
	Processes *ProcessStats  `json:"processes,omitempty"`
}

// DispatchStats is a Dispatcher's view of its workers.
type DispatchStats struct {
	Redispatched uint64        `json:"redispatched"` // transactions sent to another worker after theirs was lost, busy or draining
	Workers      []WorkerStats `json:"workers"`
}

// WorkerStatus is a Worker's own count of its transactions.
type WorkerStatus struct {
	Capacity int    `json:"capacity"`
	Running  int    `json:"running"`
	Done     uint64 `json:"done"`
	Refused  uint64 `json:"refused"`  // transactions refused while draining (run elsewhere)
	Draining bool   `json:"draining"` // shutting down: running what it has, taking nothing new
}

// Stats returns a snapshot of the parts that are set.
func (m *Metrics) Stats() NodeStats {
	var st NodeStats
	if m.Gateway != nil {
		s := m.Gateway.Stats()
		st.Gateway = &s
	}
	if m.Dispatcher != nil {
		st.Dispatch = &DispatchStats{Redispatched: m.Dispatcher.Redispatched(), Workers: m.Dispatcher.Workers()}
		if st.Dispatch.Workers == nil {
			st.Dispatch.Workers = []WorkerStats{}
		}
	}
	if m.Worker != nil {
		st.Worker = &WorkerStatus{
			Capacity: m.Worker.Capacity(), Running: m.Worker.Running(), Done: m.Worker.Done(),
			Refused: m.Worker.Refused(), Draining: m.Worker.Draining(),
		}
	}
	if m.Processes != nil {
		s := m.Processes.Stats()
		st.Processes = &s
	}
	return st
}

// StatsHandler answers GET with Stats as JSON.
func (m *Metrics) StatsHandler() http.Handler {
	return getOnly("application/json", func(w io.Writer) {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(m.Stats())
	})
}

// Handler answers GET with Stats in the Prometheus text exposition
// format (version 0.0.4): counters end in _total, the dispatcher's
// per-worker series are labelled worker="<host>". It needs no Prometheus
// library.
func (m *Metrics) Handler() http.Handler {
	return getOnly("text/plain; version=0.0.4; charset=utf-8", func(w io.Writer) {
		writeMetrics(w, m.Stats())
	})
}

func getOnly(contentType string, write func(io.Writer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-store")
		bw := bufio.NewWriter(w)
		write(bw)
		_ = bw.Flush()
	})
}

// family is one metric family read from a part's stats of type T.
type family[T any] struct {
	name, kind, help string
	value            func(T) float64
}

var gatewayFamilies = []family[*Stats]{
	{"gridmesh_gateway_received_total", "counter", "Requests received from Prime, redeliveries included.",
		func(s *Stats) float64 { return float64(s.Received) }},
	{"gridmesh_gateway_started_total", "counter", "Transactions run (handed to the workers).",
		func(s *Stats) float64 { return float64(s.Started) }},
	{"gridmesh_gateway_from_journal_total", "counter", "Redelivered transactions answered from the journal, not run again.",
		func(s *Stats) float64 { return float64(s.FromJournal) }},
	{"gridmesh_gateway_duplicates_total", "counter", "Redelivered transactions dropped: running, or their answer waiting to be sent.",
		func(s *Stats) float64 { return float64(s.Duplicates) }},
	{"gridmesh_gateway_ignored_total", "counter", "Requests received while shutting down, left to Prime to redeliver.",
		func(s *Stats) float64 { return float64(s.Ignored) }},
	{"gridmesh_gateway_journaled_total", "counter", "Results written to the journal.",
		func(s *Stats) float64 { return float64(s.Journaled) }},
	{"gridmesh_gateway_journal_errors_total", "counter", "Results the journal failed to write (sent all the same).",
		func(s *Stats) float64 { return float64(s.JournalErrors) }},
	{"gridmesh_gateway_journal_marks_pending", "gauge", "Sent marks waiting to be written to the journal.",
		func(s *Stats) float64 { return float64(s.MarksPending) }},
	{"gridmesh_gateway_journal_marks_dropped_total", "counter", "Sent marks dropped because the journal's disk was too far behind; their results stay until journal_max_age.",
		func(s *Stats) float64 { return float64(s.MarksDropped) }},
	{"gridmesh_gateway_sent_total", "counter", "Responses sent to Prime.",
		func(s *Stats) float64 { return float64(s.Sent) }},
	{"gridmesh_gateway_send_errors_total", "counter", "Failed sends to Prime (each tore its stream down).",
		func(s *Stats) float64 { return float64(s.SendErrors) }},
	{"gridmesh_gateway_failed_total", "counter", "Transactions answered with a gateway error (timeout, no worker, result too large).",
		func(s *Stats) float64 { return float64(s.Failed) }},
	{"gridmesh_gateway_results_too_large_total", "counter", "Results over max_result_bytes, answered with an error instead (counted in failed too).",
		func(s *Stats) float64 { return float64(s.TooLarge) }},
	{"gridmesh_gateway_throttled_total", "counter", "Times the gateway stopped reading from Prime because too many results waited to be sent.",
		func(s *Stats) float64 { return float64(s.Throttled) }},
	{"gridmesh_gateway_handed_back_total", "counter", "Transactions given up at shutdown, left to Prime to redeliver.",
		func(s *Stats) float64 { return float64(s.HandedBack) }},
	{"gridmesh_gateway_streams_total", "counter", "Streams opened to Prime.",
		func(s *Stats) float64 { return float64(s.Streams) }},
	{"gridmesh_gateway_prime_connected", "gauge", "1 while a stream to Prime is up, else 0.",
		func(s *Stats) float64 { return b2f(s.Connected) }},
	{"gridmesh_gateway_in_flight", "gauge", "Transactions running or whose answer waits to be sent.",
		func(s *Stats) float64 { return float64(s.InFlight) }},
}

var dispatchFamilies = []family[*DispatchStats]{
	{"gridmesh_gateway_redispatched_total", "counter", "Transactions sent to another worker after theirs was lost, busy or draining.",
		func(s *DispatchStats) float64 { return float64(s.Redispatched) }},
}

// perWorkerFamilies are labelled worker="<host>".
var perWorkerFamilies = []family[WorkerStats]{
	{"gridmesh_gateway_worker_up", "gauge", "1 while the worker is connected and answered its probe, else 0.",
		func(w WorkerStats) float64 { return b2f(w.Up) }},
	{"gridmesh_gateway_worker_draining", "gauge", "1 while the worker said it is draining, else 0.",
		func(w WorkerStats) float64 { return b2f(w.Draining) }},
	{"gridmesh_gateway_worker_capacity", "gauge", "Transactions the worker runs at once, as it advertised.",
		func(w WorkerStats) float64 { return float64(w.Capacity) }},
	{"gridmesh_gateway_worker_running", "gauge", "Transactions the gateway has running on the worker.",
		func(w WorkerStats) float64 { return float64(w.Running) }},
	{"gridmesh_gateway_worker_done_total", "counter", "Transactions the worker answered (since the gateway started).",
		func(w WorkerStats) float64 { return float64(w.Done) }},
}

var workerFamilies = []family[*WorkerStatus]{
	{"gridmesh_worker_capacity", "gauge", "Transactions this worker runs at once.",
		func(s *WorkerStatus) float64 { return float64(s.Capacity) }},
	{"gridmesh_worker_running", "gauge", "Transactions running on this worker.",
		func(s *WorkerStatus) float64 { return float64(s.Running) }},
	{"gridmesh_worker_done_total", "counter", "Transactions this worker finished.",
		func(s *WorkerStatus) float64 { return float64(s.Done) }},
	{"gridmesh_worker_refused_total", "counter", "Transactions refused while draining, left to the gateway to run elsewhere.",
		func(s *WorkerStatus) float64 { return float64(s.Refused) }},
	{"gridmesh_worker_draining", "gauge", "1 while the worker drains before shutting down, else 0.",
		func(s *WorkerStatus) float64 { return b2f(s.Draining) }},
}

var processFamilies = []family[*ProcessStats]{
	{"gridmesh_worker_processes", "gauge", "Contract process slots.",
		func(s *ProcessStats) float64 { return float64(s.Processes) }},
	{"gridmesh_worker_processes_running", "gauge", "Contract processes up.",
		func(s *ProcessStats) float64 { return float64(s.Running) }},
	{"gridmesh_worker_process_in_flight", "gauge", "Transactions sent to contract processes and not yet answered.",
		func(s *ProcessStats) float64 { return float64(s.InFlight) }},
	{"gridmesh_worker_process_starts_total", "counter", "Contract processes started, the first ones included.",
		func(s *ProcessStats) float64 { return float64(s.Starts) }},
	{"gridmesh_worker_process_ended_total", "counter", "Contract processes that ended other than at shutdown, or failed to start again.",
		func(s *ProcessStats) float64 { return float64(s.Ended) }},
	{"gridmesh_worker_process_protocol_errors_total", "counter", "Contract processes killed for breaking the line protocol.",
		func(s *ProcessStats) float64 { return float64(s.ProtocolErrs) }},
	{"gridmesh_worker_process_wedged_total", "counter", "Contract processes killed for answering none of WedgedAfter transactions in a row in time.",
		func(s *ProcessStats) float64 { return float64(s.Wedged) }},
	{"gridmesh_worker_process_late_answers_total", "counter", "Answers dropped because their caller had given up.",
		func(s *ProcessStats) float64 { return float64(s.LateAnswers) }},
	{"gridmesh_worker_process_cancelled_total", "counter", "Transactions given up on and cancelled on their contract process with a cancel line.",
		func(s *ProcessStats) float64 { return float64(s.Cancelled) }},
}

// writeMetrics writes the parts of st that are set.
func writeMetrics(w io.Writer, st NodeStats) {
	if st.Gateway != nil {
		writeFamilies(w, gatewayFamilies, st.Gateway)
	}
	if st.Dispatch != nil {
		writeFamilies(w, dispatchFamilies, st.Dispatch)
		for _, f := range perWorkerFamilies {
			writeHeader(w, f.name, f.kind, f.help)
			for _, ws := range st.Dispatch.Workers {
				fmt.Fprintf(w, "%s{worker=\"%s\"} %g\n", f.name, escapeLabel(ws.Host), f.value(ws))
			}
		}
	}
	if st.Worker != nil {
		writeFamilies(w, workerFamilies, st.Worker)
	}
	if st.Processes != nil {
		writeFamilies(w, processFamilies, st.Processes)
	}
}

func writeFamilies[T any](w io.Writer, fs []family[T], v T) {
	for _, f := range fs {
		writeHeader(w, f.name, f.kind, f.help)
		fmt.Fprintf(w, "%s %g\n", f.name, f.value(v))
	}
}

func writeHeader(w io.Writer, name, kind, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// escapeLabel escapes a label value as the text format requires.
func escapeLabel(v string) string { return labelEscaper.Replace(v) }
