package grid

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// DefaultMetricsPath is where the gridmesh command mounts MetricsHandler.
const DefaultMetricsPath = "/gridmesh/metrics"

// MetricsHandler returns an http.Handler that answers GET with the
// Manager's Stats in the Prometheus text exposition format (version
// 0.0.4), one series per peer labelled peer="<host>". It needs no
// Prometheus library; scrape it as any other target.
func (m *Manager) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		bw := bufio.NewWriter(w)
		writeMetrics(bw, m.Stats())
		bw.Flush()
	})
}

// metric is one metric family, read from a peer's stats.
type metric struct {
	name, kind, help string
	value            func(ConnectionStats) float64
}

var metrics = []metric{
	{"gridmesh_peer_up", "gauge", "1 while the connection to the peer is up, else 0.",
		func(s ConnectionStats) float64 { return b2f(s.State == StateConnected) }},
	{"gridmesh_peer_connects_total", "counter", "Sessions established with the peer.",
		func(s ConnectionStats) float64 { return float64(s.Connects) }},
	{"gridmesh_peer_rtt_seconds", "gauge", "Round trip of the last answered ping.",
		func(s ConnectionStats) float64 { return s.LastRTT.Seconds() }},
	{"gridmesh_peer_bytes_received_total", "counter", "Bytes read from the peer.",
		func(s ConnectionStats) float64 { return float64(s.BytesIn) }},
	{"gridmesh_peer_bytes_sent_total", "counter", "Bytes written to the peer.",
		func(s ConnectionStats) float64 { return float64(s.BytesOut) }},
	{"gridmesh_peer_frames_received_total", "counter", "Mux frames read from the peer.",
		func(s ConnectionStats) float64 { return float64(s.FramesIn) }},
	{"gridmesh_peer_writes_total", "counter", "Batched writes (WebSocket messages) to the peer.",
		func(s ConnectionStats) float64 { return float64(s.Writes) }},
	{"gridmesh_peer_requests_sent_total", "counter", "Single requests sent to the peer.",
		func(s ConnectionStats) float64 { return float64(s.RequestsOut) }},
	{"gridmesh_peer_requests_served_total", "counter", "Single requests served for the peer.",
		func(s ConnectionStats) float64 { return float64(s.Served) }},
	{"gridmesh_peer_remote_errors_total", "counter", "Requests to the peer answered with an error.",
		func(s ConnectionStats) float64 { return float64(s.RemoteErrors) }},
	{"gridmesh_peer_requests_cancelled_total", "counter", "Requests to the peer given up by their caller.",
		func(s ConnectionStats) float64 { return float64(s.Cancelled) }},
	{"gridmesh_peer_requests_in_flight", "gauge", "Requests to the peer awaiting an answer.",
		func(s ConnectionStats) float64 { return float64(s.InFlight) }},
	{"gridmesh_peer_handlers_running", "gauge", "Handlers running for the peer.",
		func(s ConnectionStats) float64 { return float64(s.Running) }},
	{"gridmesh_peer_requests_unanswered", "gauge", "Requests of the peer taken by a handler whose answer is not queued yet.",
		func(s ConnectionStats) float64 { return float64(s.Unanswered) }},
	{"gridmesh_peer_streams_opened", "gauge", "Streams this node opened to the peer that are still open.",
		func(s ConnectionStats) float64 { return float64(s.StreamsOut) }},
	{"gridmesh_peer_streams_served", "gauge", "Streams the peer opened that are still open.",
		func(s ConnectionStats) float64 { return float64(s.StreamsIn) }},
	{"gridmesh_peer_queued_bytes", "gauge", "Bytes waiting for the writer of the peer's connection.",
		func(s ConnectionStats) float64 { return float64(s.QueuedBytes) }},
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writeMetrics writes st in the Prometheus text format, peers sorted.
func writeMetrics(w io.Writer, st ManagerStats) {
	hosts := make([]string, 0, len(st.Peers))
	for h := range st.Peers {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, mt := range metrics {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", mt.name, mt.help, mt.name, mt.kind)
		for _, h := range hosts {
			fmt.Fprintf(w, "%s{peer=\"%s\"} %g\n", mt.name, escapeLabel(h), mt.value(st.Peers[h]))
		}
	}
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// escapeLabel escapes a label value as the text format requires.
func escapeLabel(v string) string { return labelEscaper.Replace(v) }
