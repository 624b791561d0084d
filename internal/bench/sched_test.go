package bench

import (
	"math"
	"runtime"
	"testing"
	"time"
)

func TestRunqPercentile(t *testing.T) {
	buckets := []float64{0, 1e-6, 10e-6, 100e-6, math.Inf(1)}
	before := schedSnapshot{counts: []uint64{1, 1, 1, 1}, buckets: buckets}
	after := schedSnapshot{counts: []uint64{91, 10, 2, 1}, buckets: buckets} // 90, 9, 1, 0 more
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{
		{50, time.Microsecond},
		{90, time.Microsecond},
		{91, 10 * time.Microsecond},
		{99, 10 * time.Microsecond},
		{100, 100 * time.Microsecond},
	} {
		if got := runqPercentile(before, after, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}

	// An exact rank is not rounded up: 7% of 100 waits is the 7th, the
	// last of the first bucket (7/100*100 in floating point is just over 7).
	edge := schedSnapshot{counts: []uint64{8, 94, 1, 1}, buckets: buckets} // 7, 93, 0, 0 more
	if got := runqPercentile(before, edge, 7); got != time.Microsecond {
		t.Errorf("p7 at a bucket's edge = %v, want 1µs", got)
	}

	// Waits in the unbounded last bucket count as its lower boundary.
	tail := schedSnapshot{counts: []uint64{1, 1, 1, 3}, buckets: buckets}
	if got := runqPercentile(before, tail, 99); got != 100*time.Microsecond {
		t.Errorf("unbounded bucket: p99 = %v, want 100µs", got)
	}
	// Nothing recorded between the snapshots, or snapshots that do not
	// match (a runtime without the metric): 0.
	if got := runqPercentile(before, before, 99); got != 0 {
		t.Errorf("no waits: p99 = %v, want 0", got)
	}
	if got := runqPercentile(schedSnapshot{}, after, 99); got != 0 {
		t.Errorf("mismatched snapshots: p99 = %v, want 0", got)
	}
}

// TestReadSched checks that this runtime has the histogram and that it
// records waits: goroutines that yield to each other must wait in a run
// queue.
func TestReadSched(t *testing.T) {
	before := readSched()
	if len(before.counts) == 0 || len(before.buckets) != len(before.counts)+1 {
		t.Fatalf("%s: %d counts, %d bucket boundaries", schedLatencies, len(before.counts), len(before.buckets))
	}
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 1000 {
				runtime.Gosched()
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	if got := runqPercentile(before, readSched(), 99); got <= 0 {
		t.Fatalf("p99 run-queue wait after 4000 yields: %v", got)
	}
}
