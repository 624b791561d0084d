package grid

import (
	"io"
	"net/http"
	"slices"

	"github.com/gridmesh/gridmesh/internal/promtext"
)

// DefaultMetricsPath is a path to mount MetricsHandler at beside the grid
// route, for a library user. The gridmesh command serves the grid's metrics
// on its operations port instead, at /metrics with everything else.
const DefaultMetricsPath = "/gridmesh/metrics"

// MetricsHandler returns an http.Handler that answers GET with the
// Manager's Stats in the Prometheus text exposition format (version
// 0.0.4), one series per peer labelled peer="<host>". It needs no
// Prometheus library; scrape it as any other target.
func (m *Manager) MetricsHandler() http.Handler {
	return promtext.Handler(promtext.ContentType, m.WriteMetrics)
}

// WriteMetrics writes what MetricsHandler serves to w.
func (m *Manager) WriteMetrics(w io.Writer) { writeMetrics(w, m.Stats()) }

// peerStats is one peer's row of the per-peer metrics.
type peerStats struct {
	host string
	ConnectionStats
}

var metrics = []promtext.Family[peerStats]{
	promtext.Gauge("gridmesh_peer_up", "1 while the connection to the peer is up, else 0.",
		func(s peerStats) float64 { return promtext.Bool(s.State == StateConnected) }),
	promtext.Counter("gridmesh_peer_connects_total", "Sessions established with the peer.",
		func(s peerStats) float64 { return float64(s.Connects) }),
	promtext.Gauge("gridmesh_peer_rtt_seconds", "Round trip of the last answered ping.",
		func(s peerStats) float64 { return s.LastRTT.Seconds() }),
	promtext.Counter("gridmesh_peer_bytes_received_total", "Bytes read from the peer.",
		func(s peerStats) float64 { return float64(s.BytesIn) }),
	promtext.Counter("gridmesh_peer_bytes_sent_total", "Bytes written to the peer.",
		func(s peerStats) float64 { return float64(s.BytesOut) }),
	promtext.Counter("gridmesh_peer_frames_received_total", "Mux frames read from the peer.",
		func(s peerStats) float64 { return float64(s.FramesIn) }),
	promtext.Counter("gridmesh_peer_writes_total", "Batched writes (WebSocket messages) to the peer.",
		func(s peerStats) float64 { return float64(s.Writes) }),
	promtext.Counter("gridmesh_peer_requests_sent_total", "Single requests sent to the peer.",
		func(s peerStats) float64 { return float64(s.RequestsOut) }),
	promtext.Counter("gridmesh_peer_requests_served_total", "Single requests served for the peer.",
		func(s peerStats) float64 { return float64(s.Served) }),
	promtext.Counter("gridmesh_peer_requests_served_inline_total", "Requests served for the peer by handlers registered inline, on the connection's reader.",
		func(s peerStats) float64 { return float64(s.ServedInline) }),
	promtext.Counter("gridmesh_peer_inline_handoffs_total", "Inline handlers that overran the inline budget, so that the connection's reading moved to a new goroutine.",
		func(s peerStats) float64 { return float64(s.InlineHandoffs) }),
	promtext.Counter("gridmesh_peer_remote_errors_total", "Requests to the peer answered with an error.",
		func(s peerStats) float64 { return float64(s.RemoteErrors) }),
	promtext.Counter("gridmesh_peer_requests_cancelled_total", "Requests to the peer given up by their caller.",
		func(s peerStats) float64 { return float64(s.Cancelled) }),
	promtext.Gauge("gridmesh_peer_requests_in_flight", "Requests to the peer awaiting an answer.",
		func(s peerStats) float64 { return float64(s.InFlight) }),
	promtext.Gauge("gridmesh_peer_handlers_running", "Handlers running for the peer's live session.",
		func(s peerStats) float64 { return float64(s.Running) }),
	promtext.Gauge("gridmesh_peer_handlers_orphaned", "Handlers still running for the peer's sessions already gone: they ignore their cancelled context, and their answers will be dropped.",
		func(s peerStats) float64 { return float64(s.OrphanedHandlers) }),
	promtext.Gauge("gridmesh_peer_requests_unanswered", "Requests of the peer taken by a handler whose answer is not queued yet.",
		func(s peerStats) float64 { return float64(s.Unanswered) }),
	promtext.Gauge("gridmesh_peer_streams_opened", "Streams this node opened to the peer that are still open.",
		func(s peerStats) float64 { return float64(s.StreamsOut) }),
	promtext.Gauge("gridmesh_peer_streams_served", "Streams the peer opened that are still open.",
		func(s peerStats) float64 { return float64(s.StreamsIn) }),
	promtext.Gauge("gridmesh_peer_queued_bytes", "Bytes waiting for the writer of the peer's connection.",
		func(s peerStats) float64 { return float64(s.QueuedBytes) }),
}

// writeMetrics writes st in the Prometheus text format, peers sorted.
func writeMetrics(w io.Writer, st ManagerStats) {
	hosts := make([]string, 0, len(st.Peers))
	for h := range st.Peers {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	rows := make([]peerStats, len(hosts))
	for i, h := range hosts {
		rows[i] = peerStats{h, st.Peers[h]}
	}
	promtext.WriteLabelled(w, metrics, "peer", rows, func(p peerStats) string { return p.host })
}
