package gateway

import (
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/internal/latency"
	"github.com/gridmesh/gridmesh/internal/promtext"
)

// latencyWindow is how many of the latest transactions' latencies
// Stats.TxLatency's percentiles are taken from.
const latencyWindow = 1024

// LatencySummary summarises the latency of the transactions a gateway ran
// and answered, from their receipt to their answer's Send: Stats.TxLatency.
type LatencySummary struct {
	// Count is how many there were since the gateway started: the count
	// of the histogram gridmesh_gateway_transaction_seconds.
	Count uint64 `json:"count"`
	// P50, P90 and P99 are nearest-rank percentiles (package
	// internal/latency), in seconds, of the latest Window of them; 0
	// without any.
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Window int     `json:"window"`
}

// latencyMetrics are a Gateway's latency histograms and the window of
// latest transaction latencies. Its methods may be called concurrently.
type latencyMetrics struct {
	tx    *promtext.Histogram // receipt → answer, transactions run
	queue *promtext.Histogram // waiting for a worker with room

	mu     sync.Mutex
	latest [latencyWindow]time.Duration
	n      int // samples in latest
	next   int // where the next goes
}

func newLatencyMetrics() *latencyMetrics {
	return &latencyMetrics{
		tx:    promtext.NewHistogram(promtext.LatencyBuckets),
		queue: promtext.NewHistogram(promtext.LatencyBuckets),
	}
}

// answered counts the latency of a transaction run and answered.
func (m *latencyMetrics) answered(d time.Duration) {
	m.tx.ObserveDuration(d)
	m.mu.Lock()
	m.latest[m.next] = d
	m.next = (m.next + 1) % len(m.latest)
	m.n = min(m.n+1, len(m.latest))
	m.mu.Unlock()
}

// summary returns the summary of the latencies counted.
func (m *latencyMetrics) summary() LatencySummary {
	m.mu.Lock()
	samples := make([]time.Duration, m.n)
	copy(samples, m.latest[:m.n])
	m.mu.Unlock()
	s := LatencySummary{Count: m.tx.Snapshot().Count, Window: len(samples)}
	if len(samples) > 0 {
		p := latency.Percentiles(samples, 50, 90, 99)
		s.P50, s.P90, s.P99 = p[0].Seconds(), p[1].Seconds(), p[2].Seconds()
	}
	return s
}
