package backoff

import (
	"testing"
	"time"
)

// TestDelay: min(max, base·2^n) plus a jitter in [0, base), over enough
// attempts for the shift to overflow, for the grid's and the gateway's
// defaults and a max below base.
func TestDelay(t *testing.T) {
	for _, c := range []struct{ base, max time.Duration }{
		{100 * time.Millisecond, 5 * time.Second},
		{3 * time.Second, 120 * time.Second},
		{time.Second, 10 * time.Millisecond},
		{1, 1 << 62},
	} {
		for n := -2; n < 130; n++ {
			want := c.max
			if k := max(n, 0); k < 63 && c.base<<k <= c.max && c.base<<k > 0 {
				want = c.base << k
			}
			for range 20 {
				if d := Delay(c.base, c.max, n); d < want || d >= want+c.base {
					t.Fatalf("base %v, max %v, attempt %d: %v, want in [%v, %v)", c.base, c.max, n, d, want, want+c.base)
				}
			}
		}
	}
	if d := Delay(0, time.Second, 3); d != time.Second {
		t.Fatalf("base 0: %v", d)
	}
	if d := Delay(-1, -1, 0); d != 0 {
		t.Fatalf("negative: %v", d)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for i, lo := range []time.Duration{100e6, 200e6, 400e6, 800e6, 1e9, 1e9} {
		if d := b.Next(); d < lo || d >= lo+b.Base {
			t.Fatalf("attempt %d: %v, want in [%v, %v)", i, d, lo, lo+b.Base)
		}
	}
	b.Reset()
	if d := b.Next(); d >= 2*b.Base {
		t.Fatalf("after Reset: %v", d)
	}
}
