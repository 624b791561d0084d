package grid

import (
	"fmt"
	"testing"
)

// TestShouldDial checks that exactly one side of every pair dials, from
// the two names alone, and that the choice is balanced: the smaller name
// dials in about half of the pairs, and every node dials about half of its
// peers, even for names that sort in the order they were numbered.
func TestShouldDial(t *testing.T) {
	for _, n := range []int{2, 3, 4, 35, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			hosts := make([]string, n)
			for i := range hosts {
				hosts[i] = fmt.Sprintf("https://node-%02d.example:9000", (i*13)%n) // unsorted
			}
			dials := make(map[string]int)
			total := 0
			for _, a := range hosts {
				for _, b := range hosts {
					ab, ba := ShouldDial(a, b), ShouldDial(b, a)
					if a == b {
						if ab {
							t.Fatalf("%s dials itself", a)
						}
						continue
					}
					if ab == ba {
						t.Fatalf("%s and %s: dial %v and %v, want exactly one", a, b, ab, ba)
					}
					if ab {
						dials[a]++
						if a < b {
							total++
						}
					}
				}
			}
			if n < 35 {
				return // too few pairs for a statistical bound
			}
			pairs := n * (n - 1) / 2
			if 5*total < 2*pairs || 5*total > 3*pairs {
				t.Errorf("the smaller name dials in %d of %d pairs, want 40%%–60%%", total, pairs)
			}
			for _, h := range hosts {
				if 4*dials[h] < n-1 || 4*dials[h] > 3*(n-1) {
					t.Errorf("%s dials %d of %d peers, want between a quarter and three quarters", h, dials[h], n-1)
				}
			}
		})
	}
}
