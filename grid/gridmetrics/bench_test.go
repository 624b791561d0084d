package gridmetrics_test

import (
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/grid/gridmetrics"
)

// BenchmarkRoundTrip is what the metrics cost one request, as the
// session's observer tells them: begun and done on the calling side and on
// the serving side, from 32 goroutines per P (64 on 2 cores, as the grid
// benchmarks' callers). The session's clock reads are not in it.
func BenchmarkRoundTrip(b *testing.B) {
	m := gridmetrics.New()
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.RequestBegun(hOK, false)
			m.RequestBegun(hOK, true)
			m.RequestDone(hOK, true, 50*time.Microsecond, nil)
			m.RequestDone(hOK, false, 120*time.Microsecond, nil)
		}
	})
}
