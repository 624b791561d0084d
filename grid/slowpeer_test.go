package grid

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/blackhole"
)

var hSize = handlers.New(140, "grid-size") // answers the payload's length

// TestSlowReceiverNotCutOff: a live peer that reads a large request slowly
// (a link of 1.5 MB/s) answers our pings only after the megabytes queued
// ahead of them, far later than PingTimeout. It is not cut off: it keeps
// acknowledging what it has read (mux OpAck), which is its proof of life.
// The peer pings us too, and our pong waits behind the same data; to the
// peer, the data arriving is the proof.
func TestSlowReceiverNotCutOff(t *testing.T) {
	const (
		interval, timeout = 200 * time.Millisecond, 500 * time.Millisecond
		size              = 4 << 20
		rateKBs           = 1536
	)
	d, a, hole := blackholedPair(t, func(_ bool, o *Options) {
		o.PingInterval, o.PingTimeout = interval, timeout
		o.Registry = new(handlers.Registry)
		must(t, o.Registry.RegisterSingle(hSize, func(_ context.Context, p []byte) ([]byte, error) {
			return []byte(strconv.Itoa(len(p))), nil
		}))
	})
	hole.p.Limit(blackhole.Upstream, rateKBs*1000)
	ctx := testCtx(t)
	start := time.Now()
	out, err := d.m.Connection(a.name).Request(ctx, hSize, make([]byte, size))
	took := time.Since(start)
	must(t, err)
	if string(out) != strconv.Itoa(size) {
		t.Fatalf("answer %q", out)
	}
	t.Logf("%d MiB at %d KB/s took %v, with PingTimeout %v", size>>20, rateKBs, took.Round(time.Millisecond), timeout)
	if took < 3*timeout {
		t.Fatalf("the transfer took only %v: pongs were never late, the test proves nothing", took)
	}
	for _, n := range []*node{d, a} {
		peer := map[*node]*node{d: a, a: d}[n]
		st := n.m.Connection(peer.name).Stats()
		if st.Connects != 1 || st.State != StateConnected {
			t.Errorf("%s: %d sessions, state %v, last error %q: a live, slowly reading peer was cut off", n.name, st.Connects, st.State, st.LastError)
		}
	}
}
