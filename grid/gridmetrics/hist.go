package gridmetrics

import (
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// numBuckets is the number of finite buckets of DurationBuckets; the
// histogram keeps one more count, for +Inf.
const numBuckets = 17

// bounds is DurationBuckets as made, whatever a user does to that slice.
var bounds = slices.Clone(DurationBuckets)

// bucketBase is DurationBuckets' first upper bound, in nanoseconds; each
// next bound doubles it.
const bucketBase = 100 * time.Microsecond

// bucketOf returns the index of d's bucket: the first i with
// d <= bucketBase·2^i, or numBuckets (+Inf). It is the index a search over
// DurationBuckets gives, found with one division and bits.Len instead.
func bucketOf(d time.Duration) int {
	if d <= bucketBase {
		return 0
	}
	c := (uint64(d) + uint64(bucketBase) - 1) / uint64(bucketBase) // ceil(d / base) ≥ 2
	return min(bits.Len64(c-1), numBuckets)
}

// numStripes is how many stripes a handler's counts are spread over, a
// power of two: enough that callers on different cores seldom write the
// same cache line.
const numStripes = 8

// stripe is one share of a handler's counts, alone on its cache lines.
type stripe struct {
	calls  atomic.Uint64
	sum    atomic.Int64 // nanoseconds
	counts [numBuckets + 1]atomic.Uint64
	_      [64 - (2+numBuckets+1)*8%64]byte
}

// hist counts one handler's calls on one side and their durations: a
// histogram with DurationBuckets, counted with atomic adds on one of
// numStripes stripes, the one of the counting goroutine's P, summed at
// scrape. The sum is kept in integer nanoseconds (an atomic add, where a
// float sum needs a compare-and-swap loop).
type hist struct {
	_       [64]byte // off the cache line of what is before
	stripes [numStripes]stripe
}

// pick returns the stripe for a count made on this goroutine's P (see
// stripeOfP).
func (h *hist) pick() *stripe {
	i := stripeOfP.Get().(*int)
	s := &h.stripes[*i]
	stripeOfP.Put(i)
	return s
}

// stripeOfP keeps, per P, the index of the stripes its counts go to, so
// that the cache lines a core writes stay in its cache: picked at random
// per count, two cores wrote the same lines about half the time, and
// each such write waited for the line to move between them. A sync.Pool
// is a per-P cache, reached without a lock or an atomic write; when a
// garbage collection empties it, the next Get hands out the next index,
// round robin. Two Ps sharing a stripe only share lines: the counts stay
// exact.
var stripeOfP = sync.Pool{New: func() any { return &stripeIndexes[nextStripe.Add(1)&(numStripes-1)] }}

var (
	stripeIndexes = func() (a [numStripes]int) {
		for i := range a {
			a[i] = i
		}
		return a
	}()
	nextStripe atomic.Uint32
)

// observe counts one duration.
func (s *stripe) observe(d time.Duration) {
	s.counts[bucketOf(d)].Add(1)
	s.sum.Add(int64(d))
}

// calls returns the calls begun, summed over the stripes.
func (h *hist) calls() uint64 {
	var n uint64
	for i := range h.stripes {
		n += h.stripes[i].calls.Load()
	}
	return n
}

// metric returns the histogram as a constant metric with the labels lv.
// The stripes are read one count at a time, not as one snapshot: a scrape
// during calls may see a duration's count but not yet its sum; the count
// always equals the +Inf bucket.
func (h *hist) metric(desc *prometheus.Desc, lv []string) prometheus.Metric {
	var counts [numBuckets + 1]uint64
	var sum int64
	for i := range h.stripes {
		s := &h.stripes[i]
		for b := range counts {
			counts[b] += s.counts[b].Load()
		}
		sum += s.sum.Load()
	}
	buckets := make(map[float64]uint64, numBuckets)
	var n uint64
	for b, le := range bounds {
		n += counts[b]
		buckets[le] = n
	}
	n += counts[numBuckets]
	return prometheus.MustNewConstHistogram(desc, n, time.Duration(sum).Seconds(), buckets, lv...)
}
