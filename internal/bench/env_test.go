package bench

import "os"

// GRIDMESH_BENCH_METRICS=off runs the benchmarks here with the grid's
// per-handler metrics off (DisableMetrics), to profile what they cost;
// GRIDMESH_BENCH_INLINE=on, with the echo handler registered inline
// (InlineEcho).
func init() {
	if os.Getenv("GRIDMESH_BENCH_METRICS") == "off" {
		DisableMetrics = true
	}
	if os.Getenv("GRIDMESH_BENCH_INLINE") == "on" {
		InlineEcho = true
	}
}
