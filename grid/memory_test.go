package grid

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"
)

// liveBytes returns the heap in use plus goroutine stacks, after a GC.
func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// TestIdleConnectionMemory starts 100 pairs of nodes whose dialers are
// held back, measures, lets them connect, idles, and measures again: the
// difference is what 100 idle connections cost, both ends counted (heap in
// use + goroutine stacks, from runtime.MemStats; the Managers and HTTP
// servers themselves are in the baseline). It fails if one connection
// costs more than maxIdle.
func TestIdleConnectionMemory(t *testing.T) {
	const pairs = 100
	const maxIdle = 128 << 10 // both ends; the target is 64 KiB per end, with room for noise
	gate := make(chan struct{})
	held := func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	nodes := make([]*node, 0, 2*pairs)
	for range pairs {
		lns, names := listen(t, 2)
		for i := range 2 {
			o := baseOptions(names[i], names)
			o.PingInterval = time.Minute // idle: no ping during the measurement
			o.NetDial = held
			nodes = append(nodes, startNode(t, lns[i], o))
		}
	}
	before := liveBytes()
	close(gate)
	ctx := testCtx(t)
	for _, n := range nodes {
		must(t, n.m.WaitForConnect(ctx))
	}
	// Let the handshake's garbage and the first writes settle.
	time.Sleep(100 * time.Millisecond)
	after := liveBytes()
	per := (int64(after) - int64(before)) / pairs
	goroutines := runtime.NumGoroutine()
	t.Logf("%d idle connections: %d B each, both ends counted (%d B per end); %d goroutines in the process",
		pairs, per, per/2, goroutines)
	if per > maxIdle {
		t.Errorf("an idle connection costs %d B, want at most %d", per, maxIdle)
	}
	for _, n := range nodes {
		n.stop()
	}
}
