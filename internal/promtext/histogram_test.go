package promtext_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/internal/promtext"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

func TestHistogram(t *testing.T) {
	h := promtext.NewHistogram([]float64{0.1, 1, 10})
	for _, v := range []float64{0.05, 0.1, 0.5, 3, 100} {
		h.Observe(v)
	}
	h.ObserveDuration(2 * time.Second)
	s := h.Snapshot()
	if want := []uint64{2, 3, 5, 6}; !slices.Equal(s.Cumulative, want) || s.Count != 6 || s.Sum != 105.65 {
		t.Fatalf("snapshot %+v, want cumulative %v, count 6, sum 105.65", s, want)
	}
	var b strings.Builder
	promtext.WriteHistogram(&b, "x_seconds", "Latency.",
		promtext.HistogramSeries{Labels: []string{"worker", `a"b`}, Snapshot: s},
		promtext.HistogramSeries{Snapshot: promtext.NewHistogram([]float64{1}).Snapshot()})
	want := "# HELP x_seconds Latency.\n# TYPE x_seconds histogram\n" +
		"x_seconds_bucket{worker=\"a\\\"b\",le=\"0.1\"} 2\n" +
		"x_seconds_bucket{worker=\"a\\\"b\",le=\"1\"} 3\n" +
		"x_seconds_bucket{worker=\"a\\\"b\",le=\"10\"} 5\n" +
		"x_seconds_bucket{worker=\"a\\\"b\",le=\"+Inf\"} 6\n" +
		"x_seconds_sum{worker=\"a\\\"b\"} 105.65\n" +
		"x_seconds_count{worker=\"a\\\"b\"} 6\n" +
		"x_seconds_bucket{le=\"1\"} 0\nx_seconds_bucket{le=\"+Inf\"} 0\nx_seconds_sum 0\nx_seconds_count 0\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	e := testutil.ParseExposition(t, b.String())
	if e.Type["x_seconds"] != "histogram" || e.Samples[`x_seconds_count{worker="a\"b"}`] != 6 {
		t.Fatalf("parsed %+v", e)
	}
	testutil.CheckPromtool(t, b.String())
}

// TestHistogramConcurrent observes from several goroutines: no count or
// sum is lost, and every snapshot's count is its +Inf bucket.
func TestHistogramConcurrent(t *testing.T) {
	h := promtext.NewHistogram(promtext.LatencyBuckets)
	const goroutines, each = 4, 1000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				h.Observe(float64(i%3) * 0.25)
				if s := h.Snapshot(); s.Count != s.Cumulative[len(s.Cumulative)-1] {
					t.Errorf("count %d, +Inf %d", s.Count, s.Cumulative[len(s.Cumulative)-1])
					return
				}
			}
		}()
	}
	wg.Wait()
	s := h.Snapshot()
	if s.Count != goroutines*each || s.Sum != goroutines*(333*0.25+333*0.5) {
		t.Fatalf("count %d sum %g", s.Count, s.Sum)
	}
}

func TestNewHistogramRefusesBadBounds(t *testing.T) {
	for _, bounds := range [][]float64{{1, 1}, {2, 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("bounds %v accepted", bounds)
				}
			}()
			promtext.NewHistogram(bounds)
		}()
	}
}
