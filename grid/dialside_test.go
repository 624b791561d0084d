package grid

import (
	"fmt"
	"testing"
)

func TestShouldDial(t *testing.T) {
	for _, n := range []int{2, 3, 4, 35} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			hosts := make([]string, n)
			for i := range hosts {
				hosts[i] = fmt.Sprintf("https://node-%02d.example:9000", (i*7)%n) // unsorted
			}
			dials := make(map[string]int)
			for _, a := range hosts {
				for _, b := range hosts {
					ab, ba := ShouldDial(a, b, hosts), ShouldDial(b, a, hosts)
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
					}
				}
			}
			for _, h := range hosts {
				if n > 2 && 3*dials[h] < n-1 { // with two nodes one of them dials none
					t.Errorf("%s dials %d of %d peers, want at least a third", h, dials[h], n-1)
				}
			}
		})
	}
	if ShouldDial("x", "a", []string{"a", "b"}) || ShouldDial("a", "x", []string{"a", "b"}) {
		t.Error("ShouldDial is true for a host not in the list")
	}
}
