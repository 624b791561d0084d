package bench

import (
	"math"
	"runtime/metrics"
	"time"
)

// schedLatencies is the runtime's histogram of the time goroutines waited,
// runnable, before a P ran them: how long work sat in run queues.
const schedLatencies = "/sched/latencies:seconds"

// schedSnapshot is that histogram's bucket counts at one moment; they only
// grow, so the difference of two snapshots describes the time between.
type schedSnapshot struct {
	counts  []uint64
	buckets []float64 // boundaries, len(counts)+1; shared, never changed
}

func readSched() schedSnapshot {
	s := []metrics.Sample{{Name: schedLatencies}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return schedSnapshot{}
	}
	h := s[0].Value.Float64Histogram()
	return schedSnapshot{counts: append([]uint64(nil), h.Counts...), buckets: h.Buckets}
}

// runqPercentile is the p-th percentile (0 < p ≤ 100) of the run-queue
// waits that happened between before and after: the upper boundary of the
// bucket it falls in (the bucket's lower one if that is unbounded). It is
// 0 when no wait was recorded.
func runqPercentile(before, after schedSnapshot, p float64) time.Duration {
	if len(after.counts) == 0 || len(before.counts) != len(after.counts) {
		return 0
	}
	var total uint64
	for i, c := range after.counts {
		total += c - before.counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p * float64(total) / 100))
	var seen uint64
	for i, c := range after.counts {
		seen += c - before.counts[i]
		if seen >= rank {
			v := after.buckets[i+1]
			if math.IsInf(v, 1) {
				v = after.buckets[i]
			}
			return time.Duration(v * float64(time.Second))
		}
	}
	return 0
}
