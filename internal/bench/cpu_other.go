//go:build !unix

package bench

import "time"

// cpuTime is not measured here: Result.CPUPerOp stays 0.
func cpuTime() time.Duration { return 0 }
