package grid

import (
	"testing"
	"time"
)

// TestLifeSignRules: acknowledgements and the peer's own bytes count as
// life with any peer; our bytes leaving count only with a version 1 peer,
// which sends no acknowledgements.
func TestLifeSignRules(t *testing.T) {
	t0 := time.Now()
	base := lifeSign{at: t0, in: 100, read: 1000, out: 5000}
	for _, tc := range []struct {
		name string
		cur  lifeSign
		want bool
	}{
		{"nothing", lifeSign{in: 100, read: 1000, out: 5000}, false},
		{"acknowledged more", lifeSign{in: 100, read: 1001, out: 5000}, true},
		{"peer sent a lot", lifeSign{in: 100 + progressBytes, read: 1000, out: 5000}, true},
		{"peer sent a little", lifeSign{in: 100 + progressBytes - 1, read: 1000, out: 5000}, false},
		{"we sent a lot, v2 peer", lifeSign{in: 100, read: 1000, out: 5000 + 10*progressBytes}, false},
		{"we sent a lot, v1 peer", lifeSign{in: 100, read: 1000, out: 5000 + progressBytes, v1: true}, true},
		{"we sent a little, v1 peer", lifeSign{in: 100, read: 1000, out: 5000 + progressBytes - 1, v1: true}, false},
	} {
		if got := tc.cur.alive(base); got != tc.want {
			t.Errorf("%s: alive = %v, want %v", tc.name, got, tc.want)
		}
	}
}
