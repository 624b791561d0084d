//go:build race

package mux

// raceEnabled: the race detector makes sync.Pool drop buffers at random and
// adds allocations of its own, so allocation counts are not checked.
const raceEnabled = true
