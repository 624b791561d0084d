package grid

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// TestHostListsDiffer: two nodes whose lists differ (each names a third
// node the other does not know, as during a rolling change of membership)
// still connect, since each lists the other.
func TestHostListsDiffer(t *testing.T) {
	lns, names := listen(t, 2)
	a := startNode(t, lns[0], baseOptions(names[0], []string{names[0], names[1], "http://127.0.0.1:1"}))
	b := startNode(t, lns[1], baseOptions(names[1], []string{"http://127.0.0.1:2", names[1], names[0]}))
	ctx := testCtx(t)
	must(t, a.m.Connection(names[1]).WaitForConnect(ctx))
	must(t, b.m.Connection(names[0]).WaitForConnect(ctx))
	must(t, a.call(ctx, names[1], "x"))
	must(t, b.call(ctx, names[0], "y"))
}

// load makes calls from n to peer until stop is closed, counting
// failures; wait for it with the returned function.
func load(t *testing.T, n *node, peer string, stop <-chan struct{}) (calls, failures *atomic.Int64, wait func()) {
	calls, failures = new(atomic.Int64), new(atomic.Int64)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				err := n.call(ctx, peer, "load")
				cancel()
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("%s→%s: %v", n.name, peer, err)
				}
			}
		})
	}
	return calls, failures, wg.Wait
}

// waitState waits until c reaches st.
func waitState(t *testing.T, c *Connection, st State) {
	t.Helper()
	ctx := testCtx(t)
	for {
		ch := c.StateChanged()
		if c.State() == st {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s: state %v, want %v", c.Host(), c.State(), st)
		}
	}
}

// TestSetHostsUnderTraffic: a node adds two peers and removes them again
// through SetHosts while calls to a peer that stays run without pause;
// those calls never fail, the new peers connect and serve, the removed
// ones reach StateRemoved, and every change is announced on
// MembershipChanged.
func TestSetHostsUnderTraffic(t *testing.T) {
	lns, names := listen(t, 4)
	all := names
	a := startNode(t, lns[0], baseOptions(names[0], names[:2]))
	nodes := []*node{a}
	for i := 1; i < 4; i++ {
		nodes = append(nodes, startNode(t, lns[i], baseOptions(names[i], all)))
	}
	ctx := testCtx(t)
	must(t, a.m.WaitForConnect(ctx))
	stop := make(chan struct{})
	calls, failures, wait := load(t, a, names[1], stop)
	defer func() { close(stop); wait() }()

	changed := a.m.MembershipChanged()
	must(t, a.m.SetHosts(all))
	select {
	case <-changed:
	default:
		t.Fatal("SetHosts did not close MembershipChanged")
	}
	if got := len(a.m.Connections()); got != 3 {
		t.Fatalf("%d connections after adding two peers, want 3", got)
	}
	must(t, a.m.WaitForConnect(ctx))
	for _, p := range names[2:] {
		must(t, a.call(ctx, p, "new"))
	}
	more := calls.Load() + 100
	waitFor(t, "more calls", func() bool { return calls.Load() >= more })
	removed := []*Connection{a.m.Connection(names[2]), a.m.Connection(names[3])}
	must(t, a.m.SetHosts(names[:2]))
	for _, c := range removed {
		waitState(t, c, StateRemoved)
		if _, err := c.Request(ctx, hWho, nil); !errors.Is(err, ErrPeerRemoved) || !errors.Is(err, ErrDisconnected) {
			t.Fatalf("a call to a removed peer: %v, want ErrPeerRemoved", err)
		}
		if a.m.Connection(c.Host()) != nil {
			t.Fatalf("%s is still a connection", c.Host())
		}
	}
	// The removed peers still list a: their dials are refused, not served.
	for _, n := range nodes[2:] {
		if n.m.Connection(names[0]).State() == StateConnected {
			waitState(t, n.m.Connection(names[0]), StateConnecting)
		}
	}
	more = calls.Load() + 100
	waitFor(t, "more calls", func() bool { return calls.Load() >= more })
	close(stop)
	wait()
	stop = make(chan struct{}) // for the deferred close
	wait = func() {}
	if calls.Load() == 0 || failures.Load() != 0 {
		t.Fatalf("calls to the peer that stayed: %d, %d failed", calls.Load(), failures.Load())
	}
	t.Logf("calls to the peer that stayed: %d, 0 failed", calls.Load())
}

// TestSetHostsRemoveMidCall: a call in flight when its peer is removed
// finishes if it does so within RemoveGrace, and fails with
// ErrPeerRemoved if it outlives it; a new call fails at once.
func TestSetHostsRemoveMidCall(t *testing.T) {
	hSlow := handlers.New(150, "grid-slow")
	lns, names := listen(t, 2)
	release := make(chan struct{})
	oa := baseOptions(names[0], names)
	oa.RemoveGrace = testTimeout
	a := startNode(t, lns[0], oa)
	b := startNode(t, lns[1], baseOptions(names[1], names))
	must(t, b.m.RegisterSingleHandler(hSlow, func(ctx context.Context, _ []byte) ([]byte, error) {
		select {
		case <-release:
			return []byte("done"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	ctx := testCtx(t)
	must(t, a.m.WaitForConnect(ctx))
	c := a.m.Connection(names[1])
	res := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, hSlow, nil)
		res <- err
	}()
	waitFor(t, "the call in flight", func() bool { return c.Stats().InFlight == 1 })
	must(t, a.m.SetHosts(names[:1]))
	start := time.Now()
	if _, err := c.Request(ctx, hWho, nil); !errors.Is(err, ErrPeerRemoved) || !errors.Is(err, ErrNotSent) || time.Since(start) > time.Second {
		t.Fatalf("a new call after removal: %v after %v, want ErrPeerRemoved at once", err, time.Since(start))
	}
	if st := c.State(); st != StateConnected {
		t.Fatalf("state %v while a call drains, want connected", st)
	}
	close(release)
	must(t, <-res) // finished within the grace period
	waitState(t, c, StateRemoved)

}

// TestSetHostsGraceExpires: a call that outlives RemoveGrace after its
// peer's removal fails with ErrPeerRemoved, and the peer's handler is
// cancelled.
func TestSetHostsGraceExpires(t *testing.T) {
	const grace = 300 * time.Millisecond
	lns, names := listen(t, 2)
	oa := baseOptions(names[0], names)
	oa.RemoveGrace = grace
	a := startNode(t, lns[0], oa)
	startNode(t, lns[1], baseOptions(names[1], names))
	ctx := testCtx(t)
	must(t, a.m.WaitForConnect(ctx))
	c := a.m.Connection(names[1])
	res := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, hBlock, nil)
		res <- err
	}()
	waitFor(t, "the call in flight", func() bool { return c.Stats().InFlight == 1 })
	start := time.Now()
	must(t, a.m.SetHosts(names[:1]))
	err := <-res
	took := time.Since(start)
	if !errors.Is(err, ErrPeerRemoved) || !errors.Is(err, ErrDisconnected) || errors.Is(err, ErrNotSent) {
		t.Fatalf("the call in flight: %v, want ErrPeerRemoved (sent)", err)
	}
	if took < grace {
		t.Fatalf("the call failed after %v, before the grace period (%v)", took, grace)
	}
	t.Logf("the call in flight failed after %v: %v", took.Round(time.Millisecond), err)
	waitState(t, c, StateRemoved)
}

// TestSetHostsConcurrent: SetHosts from several goroutines at once, with
// calls running and Close at the end, under the race detector; the last
// list wins, and a bad list or a call after Close is refused.
func TestSetHostsConcurrent(t *testing.T) {
	lns, names := listen(t, 3)
	a := startNode(t, lns[0], baseOptions(names[0], names))
	for i := 1; i < 3; i++ {
		startNode(t, lns[i], baseOptions(names[i], names))
	}
	ctx := testCtx(t)
	must(t, a.m.WaitForConnect(ctx))
	lists := [][]string{names, names[:2], {names[0], names[2]}, names[:1]}
	var setters, readers sync.WaitGroup
	done := make(chan struct{})
	for g := range 4 {
		setters.Go(func() {
			for i := range 50 {
				if err := a.m.SetHosts(lists[(g+i)%len(lists)]); err != nil {
					t.Error(err)
					return
				}
			}
		})
		readers.Go(func() {
			for {
				changed := a.m.MembershipChanged()
				for _, c := range a.m.Connections() {
					_, _ = c.Request(ctx, hWho, nil) // may fail: the peer comes and goes
				}
				select {
				case <-changed:
				case <-done:
					return
				}
			}
		})
	}
	setters.Wait()
	close(done)
	readers.Wait()
	must(t, a.m.SetHosts(names))
	must(t, a.m.WaitForConnect(ctx))
	must(t, a.call(ctx, names[1], "after"))
	if err := a.m.SetHosts([]string{names[1]}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("a list without this node: %v, want ErrInvalidOptions", err)
	}
	if got := a.m.Hosts(); len(got) != 3 {
		t.Fatalf("a refused list changed the hosts: %v", got)
	}
	a.stop()
	if err := a.m.SetHosts(names[:1]); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetHosts after Close: %v, want ErrClosed", err)
	}
}
