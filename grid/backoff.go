package grid

import (
	"math/rand/v2"
	"time"
)

// backoff computes reconnect delays: min(max, base·2^n) + jitter, with the
// jitter uniform in [0, base). n counts the failed attempts since the last
// healthy connection. A backoff is used by one goroutine.
type backoff struct {
	base, max time.Duration
	n         int
}

// next returns the delay before the next attempt and counts the attempt.
func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 63 && b.base <= b.max>>b.n {
		d = b.base << b.n
	}
	b.n++
	return d + rand.N(b.base)
}

// reset starts the sequence over, after a connection proved healthy.
func (b *backoff) reset() { b.n = 0 }
