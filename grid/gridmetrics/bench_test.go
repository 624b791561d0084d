package gridmetrics_test

import (
	"context"
	"testing"

	"github.com/gridmesh/gridmesh/grid/gridmetrics"
	"github.com/gridmesh/gridmesh/mux"
)

// BenchmarkRoundTrip is what the metrics cost one request: the client
// interceptor around the server interceptor around a handler that does
// nothing, from 32 goroutines per P (64 on 2 cores, as the grid benchmarks
// callers).
func BenchmarkRoundTrip(b *testing.B) {
	m := gridmetrics.New()
	info := mux.CallInfo{Handler: hOK, Peer: "p"}
	srv := func(context.Context, mux.CallInfo, []byte) ([]byte, error) { return nil, nil }
	next := func(ctx context.Context, info mux.CallInfo, req []byte) ([]byte, error) {
		return m.Server(ctx, info, req, srv)
	}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			m.Client(ctx, info, nil, next)
		}
	})
}
