package promtext

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds, in seconds, of the latency
// histograms the gateway and the worker keep: from half a millisecond to
// a minute (the default transaction timeout).
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Histogram counts observations in fixed buckets: a Prometheus histogram
// (cumulative _bucket series with an le label, _sum and _count), kept
// without a Prometheus library. Observe takes no lock and does not
// allocate. Its methods may be called concurrently.
type Histogram struct {
	bounds  []float64       // upper bounds, ascending; +Inf is implied
	counts  []atomic.Uint64 // per bucket, not cumulative; the last is +Inf's
	sumBits atomic.Uint64   // float64 bits of the sum
}

// NewHistogram returns a histogram with the given bucket upper bounds,
// which must be ascending and finite (+Inf is added); it panics
// otherwise, as a program error.
func NewHistogram(bounds []float64) *Histogram {
	for i, b := range bounds {
		if math.IsInf(b, 0) || math.IsNaN(b) || i > 0 && b <= bounds[i-1] {
			panic(fmt.Sprintf("promtext: histogram bounds %v are not ascending and finite", bounds))
		}
	}
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe counts v.
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// ObserveDuration counts d in seconds.
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(d.Seconds()) }

// HistogramSnapshot is a histogram's state at one moment.
type HistogramSnapshot struct {
	Bounds     []float64 // upper bounds, without +Inf
	Cumulative []uint64  // observations ≤ each bound, then all of them (+Inf)
	Count      uint64    // all observations: Cumulative's last
	Sum        float64
}

// Snapshot returns the histogram's counts. Count always equals the +Inf
// bucket; Sum may lag an observation made during the snapshot.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: h.bounds, Cumulative: make([]uint64, len(h.counts))}
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
		s.Cumulative[i] = n
	}
	s.Count, s.Sum = n, math.Float64frombits(h.sumBits.Load())
	return s
}

// WriteHistogram writes a histogram family's HELP and TYPE lines and
// then, for each of series, its _bucket, _sum and _count samples.
func WriteHistogram(w io.Writer, name, help string, series ...HistogramSeries) {
	WriteHeader(w, name, "histogram", help)
	for _, s := range series {
		s.write(w, name)
	}
}

// HistogramSeries is one series of a histogram family: its labels, as
// name and value pairs, and its snapshot.
type HistogramSeries struct {
	Labels   []string // name, value, name, value, …
	Snapshot HistogramSnapshot
}

func (s HistogramSeries) write(w io.Writer, name string) {
	var lb strings.Builder
	for i := 0; i+1 < len(s.Labels); i += 2 {
		fmt.Fprintf(&lb, "%s=\"%s\",", s.Labels[i], EscapeLabel(s.Labels[i+1]))
	}
	labels := lb.String()
	for i, c := range s.Snapshot.Cumulative {
		le := "+Inf"
		if i < len(s.Snapshot.Bounds) {
			le = strconv.FormatFloat(s.Snapshot.Bounds[i], 'g', -1, 64)
		}
		fmt.Fprintf(w, "%s_bucket{%sle=\"%s\"} %d\n", name, labels, le, c)
	}
	labels = strings.TrimSuffix(labels, ",")
	if labels != "" {
		labels = "{" + labels + "}"
	}
	fmt.Fprintf(w, "%s_sum%s %g\n%s_count%s %d\n", name, labels, s.Snapshot.Sum, name, labels, s.Snapshot.Count)
}
