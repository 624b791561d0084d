//go:build race

package grid

// raceEnabled tells tests whether the race detector is on.
const raceEnabled = true
