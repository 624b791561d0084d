package gateway

import "testing"

// TestRecentSet: an ID sent again stays remembered until its latest slot
// is reused, not its first; the oldest IDs are forgotten.
func TestRecentSet(t *testing.T) {
	r := newRecentSet(3)
	r.put("a", 1)
	r.put("b", 1)
	r.put("a", 2) // ring: a b a
	r.put("c", 3) // reuses a's first slot: a is still in the third
	if got := r.get("a"); got != 2 {
		t.Fatalf("a: stream %d, want 2", got)
	}
	if got := r.get("b"); got != 1 {
		t.Fatalf("b: stream %d, want 1", got)
	}
	r.put("d", 4) // reuses b's slot
	if got := r.get("b"); got != 0 {
		t.Fatalf("b: stream %d, want it forgotten", got)
	}
	r.put("e", 5) // reuses a's last slot
	if got := r.get("a"); got != 0 {
		t.Fatalf("a: stream %d, want it forgotten", got)
	}
	for id, want := range map[string]uint64{"c": 3, "d": 4, "e": 5} {
		if got := r.get(id); got != want {
			t.Fatalf("%s: stream %d, want %d", id, got, want)
		}
	}
	if len(r.m) != 3 {
		t.Fatalf("remembers %d IDs, want 3", len(r.m))
	}
	r.put("e", 6) // the same ID again, in the slot after its own
	r.put("e", 7)
	r.put("e", 8) // e fills the ring
	if got := r.get("e"); got != 8 || len(r.m) != 1 {
		t.Fatalf("e: stream %d, %d IDs remembered; want 8 and 1", got, len(r.m))
	}
}
