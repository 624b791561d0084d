package gateway

import (
	"math/rand/v2"
	"time"
)

// healthyRun is how long a Prime stream must last for the reconnect
// backoff to start over.
const healthyRun = 60 * time.Second

// nextBackoff returns the delay before reconnect attempt n+1 (n counts
// from 0): min(max, base·2^n) plus a jitter in [0, base), so that many
// gateways reconnecting after a Prime restart do not arrive together.
func nextBackoff(base, maxDelay time.Duration, n int) time.Duration {
	if base <= 0 {
		base = 3 * time.Second
	}
	if maxDelay <= 0 {
		maxDelay = 120 * time.Second
	}
	d := base << min(max(n, 0), 20) // the shift is bounded: maxDelay clips it anyway
	if d > maxDelay || d <= 0 {
		d = maxDelay
	}
	return d + time.Duration(rand.Int64N(int64(base)))
}
