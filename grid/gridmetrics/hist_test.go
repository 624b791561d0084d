package gridmetrics

import (
	"slices"
	"testing"
	"time"
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
		want, _ := slices.BinarySearch(DurationBuckets, d.Seconds())
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
