package grid

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/internal/blackhole"
)

// detector records when each connection of a node went down.
type detector struct{ down chan time.Time }

func newDetector() *detector { return &detector{down: make(chan time.Time, 64)} }

func (d *detector) onChange(_ string, old, new State) {
	if old == StateConnected && new == StateConnecting {
		select {
		case d.down <- time.Now():
		default:
		}
	}
}

// wait returns the time of the next disconnection.
func (d *detector) wait(t testing.TB) time.Time {
	t.Helper()
	select {
	case at := <-d.down:
		return at
	case <-time.After(testTimeout):
		t.Fatal("no disconnection detected")
		return time.Time{}
	}
}

// holeProxy is a proxy whose data can be silently dropped in both directions
// while the TCP connections stay open.
type holeProxy struct {
	p        *blackhole.Proxy
	upstream string
	// direct makes dial bypass the proxy: tests reconnect around the
	// proxy, whose old connections stay black holes.
	direct atomic.Bool
}

func newBlackhole(t testing.TB, upstream string) *holeProxy {
	t.Helper()
	p, err := blackhole.Start(upstream)
	must(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return &holeProxy{p: p, upstream: upstream}
}

// dial is a NetDial that reaches the upstream through the proxy, until
// direct is set.
func (b *holeProxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if addr == b.upstream && !b.direct.Load() {
		addr = b.addr()
	}
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

func (b *holeProxy) addr() string { return b.p.Addr() }

// on drops all data from now on, and never closes the connections.
func (b *holeProxy) on(t testing.TB) {
	t.Helper()
	b.p.On()
}

// blackholedPair starts two nodes, the dialer dialing the acceptor
// through a blackhole (off), and waits until they are connected. tweak,
// if not nil, adjusts each node's options before it starts; dialer says
// which node it is.
func blackholedPair(t testing.TB, tweak func(dialer bool, o *Options)) (d, a *node, hole *holeProxy) {
	t.Helper()
	lns, names := listen(t, 2)
	di, ai := 0, 1
	if ShouldDial(names[1], names[0]) {
		di, ai = 1, 0
	}
	hole = newBlackhole(t, lns[ai].Addr().String())
	nodes := make([]*node, 2)
	for i := range nodes {
		o := baseOptions(names[i], names)
		if tweak != nil {
			tweak(i == di, &o)
		}
		if i == di {
			o.NetDial = hole.dial
		}
		nodes[i] = startNode(t, lns[i], o)
	}
	ctx := testCtx(t)
	for _, n := range nodes {
		must(t, n.m.WaitForConnect(ctx))
	}
	return nodes[di], nodes[ai], hole
}

// halfOpenTrial connects two nodes through a blackhole, turns it on and
// returns how long each side took to declare the connection dead. Then it
// lets the dialer reach the peer directly and checks that the pair
// reconnects.
func halfOpenTrial(t testing.TB, interval, timeout time.Duration) (dialer, acceptor time.Duration) {
	dDet, aDet := newDetector(), newDetector()
	d, a, hole := blackholedPair(t, func(isDialer bool, o *Options) {
		o.PingInterval, o.PingTimeout = interval, timeout
		o.HandshakeTimeout = 2 * time.Second
		o.OnStateChange = aDet.onChange
		if isDialer {
			o.OnStateChange = dDet.onChange
		}
	})
	ctx := testCtx(t)
	must(t, d.call(ctx, a.name, "before"))

	hole.on(t)
	start := time.Now()
	dialer = dDet.wait(t).Sub(start)
	acceptor = aDet.wait(t).Sub(start)
	hole.direct.Store(true)
	for _, n := range []*node{d, a} {
		must(t, n.m.WaitForConnect(ctx))
	}
	waitFor(t, "requests after the blackhole", func() bool {
		return d.call(ctx, a.name, "after") == nil
	})
	d.stop()
	a.stop()
	return dialer, acceptor
}

// TestHalfOpenProxy: a peer that goes silent without closing its socket is
// detected within PingInterval + PingTimeout (plus slack for a busy CI box).
func TestHalfOpenProxy(t *testing.T) {
	const interval, timeout, slack = time.Second, time.Second, 2 * time.Second
	d, a := halfOpenTrial(t, interval, timeout)
	t.Logf("half-open detected after %v (dialer) and %v (acceptor) at %v + %v", d, a, interval, timeout)
	for _, got := range []time.Duration{d, a} {
		if got > interval+timeout+slack {
			t.Errorf("detection took %v, want at most %v", got, interval+timeout+slack)
		}
	}
}

// TestReplacedWhilePinging: a peer restarts while its old connection is
// half-open, and the keep-alive of the old session waits for a pong that
// will not come. The new instance's session replaces the old one, whose
// calls must fail at once, not when the ping times out.
func TestReplacedWhilePinging(t *testing.T) {
	d, a, hole := blackholedPair(t, func(_ bool, o *Options) {
		o.PingInterval, o.PingTimeout = 50*time.Millisecond, time.Minute
	})
	errc := blockedCall(t, a, d)
	hole.on(t)
	// Several ping intervals: a's keep-alive is now waiting in a ping
	// that has a minute to time out.
	time.Sleep(300 * time.Millisecond)
	ln, _ := listen(t, 1)
	o := d.m.opts
	o.NetDial = nil
	twin := startNode(t, ln[0], o)
	waitFor(t, "the twin connected", func() bool {
		return a.m.Connection(d.name).Stats().PeerInstance == twin.m.instance
	})
	failsFast(t, "call on the replaced session", errc)
}
