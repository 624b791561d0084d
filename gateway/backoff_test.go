package gateway

import (
	"testing"
	"time"
)

func TestNextBackoff(t *testing.T) {
	base, maxDelay := 3*time.Second, 120*time.Second
	for n := range 40 {
		want := min(maxDelay, base<<min(n, 20))
		for range 50 {
			d := nextBackoff(base, maxDelay, n)
			if d < want || d >= want+base {
				t.Fatalf("attempt %d: %v, want in [%v, %v)", n, d, want, want+base)
			}
		}
	}
}
