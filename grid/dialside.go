package grid

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
)

// ShouldDial reports whether the node named local opens the connection to
// the node named remote, given the full host list. Both nodes compute the
// same answer from the same list, so exactly one of them dials: for hosts
// sorted as strings, with i the index of local, j that of remote and n the
// number of hosts, local dials iff d = (j-i+n) mod n is below n/2, or d is
// exactly n/2 (n even) and local < remote. Every node thus dials about half
// of its peers. ShouldDial is false when local equals remote or when either
// is missing from hosts.
func ShouldDial(local, remote string, hosts []string) bool {
	sorted := slices.Clone(hosts)
	slices.Sort(sorted)
	return shouldDialSorted(local, remote, sorted)
}

func shouldDialSorted(local, remote string, sorted []string) bool {
	i, ok1 := slices.BinarySearch(sorted, local)
	j, ok2 := slices.BinarySearch(sorted, remote)
	if !ok1 || !ok2 || i == j {
		return false
	}
	n := len(sorted)
	d := (j - i + n) % n
	if 2*d == n {
		return local < remote
	}
	return 2*d < n
}

// hostsHash identifies a sorted host list, so two nodes can tell that they
// decide the dial side from the same list.
func hostsHash(sorted []string) string {
	h := sha256.New()
	for _, s := range sorted {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
