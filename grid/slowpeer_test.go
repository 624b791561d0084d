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
// (a link of 192 KB/s) answers our pings only after the data queued
// ahead of them (about 600 KB on loopback here), later than PingTimeout.
// It is not cut off: it keeps acknowledging what it has read (mux
// OpAck), which is its proof of life.
// The peer pings us too, and our pong waits behind the same data; to the
// peer, the data arriving is the proof.
func TestSlowReceiverNotCutOff(t *testing.T) {
	const (
		// A timeout well above what a loaded machine's scheduling delays
		// a pong by, a link slow enough that pongs queued behind the data
		// are later still (about 3 s), and a transfer that lasts over 3
		// timeouts (1.5 MiB at 192 KB/s: about 8 s).
		interval, timeout = 500 * time.Millisecond, 2 * time.Second
		size              = 3 << 19
		rateKBs           = 192
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
	// The longest round trip of a ping during the transfer, for the log.
	stop, slowest := make(chan struct{}), make(chan time.Duration)
	go func() {
		var worst time.Duration
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			worst = max(worst, d.m.Connection(a.name).Stats().LastRTT)
			select {
			case <-stop:
				slowest <- worst
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	out, err := d.m.Connection(a.name).Request(ctx, hSize, make([]byte, size))
	took := time.Since(start)
	close(stop)
	worstRTT := <-slowest
	must(t, err)
	if string(out) != strconv.Itoa(size) {
		t.Fatalf("answer %q", out)
	}
	t.Logf("%d KiB at %d KB/s took %v, with PingTimeout %v; the slowest pong answered took %v",
		size>>10, rateKBs, took.Round(time.Millisecond), timeout, worstRTT.Round(time.Millisecond))
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
