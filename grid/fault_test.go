package grid

import (
	"context"
	"net"
	"testing"
	"time"
)

// pair starts two nodes and returns them as (dialer, acceptor).
func pair(t *testing.T, tweak func(*Options)) (*node, *node, []net.Listener) {
	t.Helper()
	lns, names := listen(t, 2)
	nodes := make([]*node, 2)
	for i := range nodes {
		o := baseOptions(names[i], names)
		if tweak != nil {
			tweak(&o)
		}
		nodes[i] = startNode(t, lns[i], o)
	}
	ctx := testCtx(t)
	for _, nd := range nodes {
		must(t, nd.m.WaitForConnect(ctx))
	}
	if ShouldDial(names[0], names[1]) {
		return nodes[0], nodes[1], lns
	}
	return nodes[1], nodes[0], []net.Listener{lns[1], lns[0]}
}

// blockedCall starts a call from a to b that blocks in b's handler until
// the connection breaks; its error arrives on the returned channel.
func blockedCall(t *testing.T, a, b *node) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	ctx := testCtx(t)
	go func() {
		_, err := a.m.Connection(b.name).Request(ctx, hBlock, nil)
		errc <- err
	}()
	waitFor(t, "the blocking call to reach its handler", func() bool {
		return b.m.Connection(a.name).Stats().Running > 0
	})
	return errc
}

// failsFast checks that a blocked call failed with ErrDisconnected soon.
func failsFast(t *testing.T, what string, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if !isDisconnected(err) {
			t.Fatalf("%s: got %v, want ErrDisconnected", what, err)
		}
	case <-time.After(2 * time.Second): // well below the 4 s of a missed ping
		t.Fatalf("%s: call still blocked 2 s after the connection broke", what)
	}
}

func TestKilledConnection(t *testing.T) {
	d, a, _ := pair(t, nil)
	e1, e2 := blockedCall(t, d, a), blockedCall(t, a, d)
	if n := d.dialer.killAll(); n == 0 {
		t.Fatal("no connection to kill")
	}
	failsFast(t, "dialer→acceptor", e1)
	failsFast(t, "acceptor→dialer", e2)
	ctx := testCtx(t)
	for _, n := range []*node{d, a} {
		for _, p := range []*node{d, a} {
			if p == n {
				continue
			}
			waitFor(t, "reconnect", func() bool { return n.m.Connection(p.name).Stats().Connects >= 2 })
			must(t, n.m.Connection(p.name).WaitForConnect(ctx))
			must(t, n.call(ctx, p.name, "again"))
		}
	}
	if a.log.count("peer restarted") != 0 || d.log.count("peer restarted") != 0 {
		t.Error("a reconnect of the same process was logged as a restart")
	}
}

func TestNotConnected(t *testing.T) {
	lns, names := listen(t, 2)
	lns[1].Close() // the peer never comes up
	n := startNode(t, lns[0], baseOptions(names[0], names))
	c := n.m.Connection(names[1])
	if _, err := c.Request(testCtx(t), hWho, nil); !isDisconnected(err) {
		t.Fatalf("request while not connected: %v, want ErrDisconnected", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitForConnect(ctx); err != context.DeadlineExceeded {
		t.Fatalf("WaitForConnect: %v", err)
	}
	if n.m.Connection(names[0]) != nil || n.m.Connection("http://nowhere:1") != nil {
		t.Fatal("Connection returned non-nil for itself or an unknown host")
	}
	n.stop()
	if _, err := c.Request(testCtx(t), hWho, nil); !isDisconnected(err) || !isClosed(err) {
		t.Fatalf("request after Close: %v, want ErrClosed and ErrDisconnected", err)
	}
	if err := c.WaitForConnect(testCtx(t)); !isClosed(err) || c.State() != StateClosed {
		t.Fatalf("WaitForConnect after Close: %v, state %v", err, c.State())
	}
}

// TestPeerRestart closes one node's Manager and starts a new one with the
// same name on the same port, once for each side of the pair.
func TestPeerRestart(t *testing.T) {
	for _, restartDialer := range []bool{true, false} {
		name := map[bool]string{true: "dialer", false: "acceptor"}[restartDialer]
		t.Run(name, func(t *testing.T) {
			d, a, lns := pair(t, nil)
			stay, gone, ln := a, d, lns[0]
			if !restartDialer {
				stay, gone, ln = d, a, lns[1]
			}
			oldInst := stay.m.Connection(gone.name).Stats().PeerInstance
			errc := blockedCall(t, stay, gone)
			gone.stop()
			failsFast(t, "call to the stopped peer", errc)

			ln2, err := net.Listen("tcp", ln.Addr().String())
			must(t, err)
			start := time.Now()
			back := startNode(t, ln2, gone.m.opts)
			ctx := testCtx(t)
			for {
				if err := stay.call(ctx, back.name, "hi"); err == nil {
					break
				} else if !isDisconnected(err) {
					t.Fatal(err)
				}
				must(t, stay.m.Connection(back.name).WaitForConnect(ctx))
			}
			t.Logf("restart to first successful request: %v", time.Since(start))
			st := stay.m.Connection(back.name).Stats()
			if st.PeerInstance == oldInst || st.Connects < 2 {
				t.Fatalf("restart not noticed: %+v", st)
			}
			waitFor(t, "restart logged", func() bool { return stay.log.count("peer restarted") == 1 })
		})
	}
}

// TestReplacedWhileUp: a new process with a peer's name connects while the
// old session is still up; the old session is closed (its calls fail) and
// the new one takes over.
func TestReplacedWhileUp(t *testing.T) {
	d, a, _ := pair(t, nil)
	errc := blockedCall(t, a, d)
	// A second dialer with d's name and a new instance, served nowhere.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	twin := startNode(t, ln, d.m.opts)
	waitFor(t, "the twin connected", func() bool {
		return a.m.Connection(d.name).Stats().PeerInstance == twin.m.instance
	})
	failsFast(t, "call on the replaced session", errc)
	if a.log.count("peer restarted") < 1 {
		t.Fatalf("replacement by a new instance not logged:\n%s", a.log)
	}
	d.stop() // leave the twin alone, then it must be usable
	ctx := testCtx(t)
	waitFor(t, "twin serves", func() bool { return a.call(ctx, d.name, "x") == nil })
}
