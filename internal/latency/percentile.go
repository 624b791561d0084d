package latency

import (
	"fmt"
	"slices"
	"time"
)

// Percentiles returns the nearest-rank percentiles ps of samples (see the
// package documentation), in the order of ps. samples may be in any order
// and is not modified: Percentiles sorts a copy. For no samples every
// percentile is 0. Each p must be in [0, 100]; Percentiles panics
// otherwise.
func Percentiles(samples []time.Duration, ps ...int) []time.Duration {
	for _, p := range ps {
		if p < 0 || p > 100 {
			panic(fmt.Sprintf("latency: percentile %d outside [0, 100]", p))
		}
	}
	out := make([]time.Duration, len(ps))
	if len(samples) == 0 {
		return out
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	for i, p := range ps {
		out[i] = sorted[rank(len(sorted), p)-1]
	}
	return out
}

// rank returns the 1-based nearest rank of percentile p among n > 0
// samples: ⌈p·n/100⌉, at least 1.
func rank(n, p int) int {
	return max((p*n+99)/100, 1)
}
