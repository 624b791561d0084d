package bench

import "os"

// GRIDMESH_BENCH_METRICS=off runs the benchmarks here with the grid's
// per-handler metrics off (DisableMetrics), to profile what they cost.
func init() {
	if os.Getenv("GRIDMESH_BENCH_METRICS") == "off" {
		DisableMetrics = true
	}
}
