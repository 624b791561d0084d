package grid

import (
	"crypto/sha256"
	"encoding/hex"
)

// ShouldDial reports whether the node named local opens the connection to
// the node named remote. The answer depends on the two names alone, not on
// any host list, so two nodes agree on it even while their lists differ
// (a membership change rolling through the cluster): with lo and hi the
// two names in string order, lo dials iff the first byte of
// SHA-256(lo, 0, hi) is even. The hash makes the choice a fair coin per
// pair, so every node dials about half of its peers whatever the names
// look like. ShouldDial is false when local equals remote.
func ShouldDial(local, remote string) bool {
	if local == remote {
		return false
	}
	lo, hi := local, remote
	if hi < lo {
		lo, hi = hi, lo
	}
	h := sha256.New()
	h.Write([]byte(lo))
	h.Write([]byte{0})
	h.Write([]byte(hi))
	loDials := h.Sum(nil)[0]&1 == 0
	return loDials == (local == lo)
}

// hostsHash identifies a sorted host list. It still travels in the
// handshake (signed, and logged when it differs) but no longer decides
// anything: nodes with different lists connect if each lists the other.
func hostsHash(sorted []string) string {
	h := sha256.New()
	for _, s := range sorted {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
