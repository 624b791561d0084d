package bench

import "testing"

// sysStat counts what a benchmark costs the kernel and the scheduler:
// read and write system calls (Linux's /proc/self/io), the threads' context
// switches (getrusage), and goroutine switches, estimated from
// /sched/latencies, which the runtime samples on every eighth switch of a
// goroutine. A count that is not known here reads 0.
type sysStat struct {
	reads, writes, osSwitches, gSwitches float64
}

// report adds the counts since st0, per op, to b's metrics.
func (st0 sysStat) report(b *testing.B) {
	st := readSysStat()
	n := float64(b.N)
	b.ReportMetric((st.reads-st0.reads)/n, "rd/op")
	b.ReportMetric((st.writes-st0.writes)/n, "wr/op")
	b.ReportMetric((st.osSwitches-st0.osSwitches)/n, "oscsw/op")
	b.ReportMetric((st.gSwitches-st0.gSwitches)/n, "gsw/op")
}
