package backoff

import (
	"math/rand/v2"
	"time"
)

// Delay returns the delay before the attempt after n failed ones (n
// counts from 0): min(maxDelay, base·2^n) plus a jitter uniform in
// [0, base). A negative n counts as 0; base·2^n never overflows (it is
// maxDelay past it). With base ≤ 0 it returns max(maxDelay, 0), with no
// jitter.
func Delay(base, maxDelay time.Duration, n int) time.Duration {
	if base <= 0 {
		return max(maxDelay, 0)
	}
	n = max(n, 0)
	d := maxDelay
	if n < 63 && base <= maxDelay>>n {
		d = base << n
	}
	return d + rand.N(base)
}

// Backoff counts failed attempts for Delay. Its zero Base makes every
// delay Max.
type Backoff struct {
	Base, Max time.Duration
	n         int
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	d := Delay(b.Base, b.Max, b.n)
	b.n++
	return d
}

// Reset starts the sequence over, after an attempt proved healthy.
func (b *Backoff) Reset() { b.n = 0 }
