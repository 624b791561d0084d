//go:build unix

package bench

import (
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
)

func readSysStat() sysStat {
	var st sysStat
	if b, err := os.ReadFile("/proc/self/io"); err == nil {
		for line := range strings.Lines(string(b)) {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
			n, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "syscr":
				st.reads = n
			case "syscw":
				st.writes = n
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		st.osSwitches = float64(ru.Nvcsw + ru.Nivcsw)
	}
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindFloat64Histogram {
		for _, c := range s[0].Value.Float64Histogram().Counts {
			st.gSwitches += 8 * float64(c)
		}
	}
	return st
}
