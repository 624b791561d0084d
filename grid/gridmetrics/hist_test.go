package gridmetrics

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestBucketOf: bucketOf gives the bucket a search over DurationBuckets
// gives (the first upper bound not below the duration), at every bound,
// a nanosecond either side of it, and for zero, negative and huge
// durations.
func TestBucketOf(t *testing.T) {
	if len(DurationBuckets) != numBuckets {
		t.Fatalf("%d DurationBuckets, numBuckets %d", len(DurationBuckets), numBuckets)
	}
	ds := []time.Duration{-1, 0, 1, 50 * time.Microsecond, time.Hour, 1<<63 - 1}
	for i := range numBuckets + 1 {
		b := bucketBase << i
		ds = append(ds, b-1, b, b+1, b+b/3)
	}
	for _, d := range ds {
		want, _ := slices.BinarySearch(bounds, d.Seconds())
		if got := bucketOf(d); got != want {
			t.Errorf("bucketOf(%v) = %d, search over DurationBuckets %d", d, got, want)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	var h hist
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			s := h.pick()
			s.calls.Add(1)
			s.observe(d)
			d += 997
		}
	})
}

// TestHistMerge: durations counted from many goroutines, on whichever
// stripes they pick, come out of a scrape as one histogram with the right
// count, sum and cumulative buckets, and calls as their total.
func TestHistMerge(t *testing.T) {
	var h hist
	ds := []time.Duration{0, 100 * time.Microsecond, 150 * time.Microsecond, time.Millisecond, time.Minute}
	const goroutines, each = 8, 1000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				for _, d := range ds {
					s := h.pick()
					s.calls.Add(1)
					s.observe(d)
				}
			}
		})
	}
	wg.Wait()
	const n = goroutines * each
	if got := h.calls(); got != n*uint64(len(ds)) {
		t.Fatalf("calls %d, want %d", got, n*len(ds))
	}
	desc := prometheus.NewDesc("x", "x", []string{"side"}, nil)
	var pb dto.Metric
	if err := h.metric(desc, []string{Client}).Write(&pb); err != nil {
		t.Fatal(err)
	}
	ph := pb.GetHistogram()
	if ph.GetSampleCount() != n*uint64(len(ds)) {
		t.Errorf("count %d, want %d", ph.GetSampleCount(), n*len(ds))
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	if want := (n * sum).Seconds(); math.Abs(ph.GetSampleSum()-want) > 1e-9*want {
		t.Errorf("sum %v, want %v", ph.GetSampleSum(), want)
	}
	// Cumulative: 0 and 100 µs in the first bucket, 150 µs in the second,
	// 1 ms in le=0.0016, a minute in none (only +Inf).
	want := map[float64]uint64{0.0001: 2 * n, 0.0002: 3 * n, 0.0008: 3 * n, 0.0016: 4 * n}
	if len(ph.GetBucket()) != numBuckets {
		t.Fatalf("%d buckets, want %d", len(ph.GetBucket()), numBuckets)
	}
	for _, b := range ph.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
		if b.GetCumulativeCount() > 4*n {
			t.Errorf("le=%v: %d, more than the durations under a minute", b.GetUpperBound(), b.GetCumulativeCount())
		}
	}
}
