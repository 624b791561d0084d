package grid

import (
	"testing"
	"time"
)

// TestStateChanged follows one connection through connect, loss,
// reconnect and close with StateChanged alone: every change closes the
// channel taken before it, and a reader that stops looking blocks nothing.
func TestStateChanged(t *testing.T) {
	lns, names := listen(t, 2)
	a := startNode(t, lns[0], baseOptions(names[0], names))
	c := a.m.Connection(names[1])
	first := c.StateChanged() // taken before the peer exists: never read again
	ch := c.StateChanged()
	if first != ch {
		t.Fatal("StateChanged returned a new channel without a change")
	}
	if st := c.State(); st != StateConnecting {
		t.Fatalf("state %v before the peer started", st)
	}
	b := startNode(t, lns[1], baseOptions(names[1], names))

	// waitChange waits for ch to close and for the state want, taking a
	// fresh channel on each wake-up as a reader must.
	waitChange := func(want State) {
		t.Helper()
		deadline := time.After(testTimeout)
		for {
			select {
			case <-ch:
			case <-deadline:
				t.Fatalf("no change to %v; state %v", want, c.State())
			}
			ch = c.StateChanged()
			if c.State() == want {
				return
			}
		}
	}
	waitChange(StateConnected)
	if n := c.Stats().Connects; n != 1 {
		t.Fatalf("%d connects, want 1", n)
	}
	select {
	case <-ch:
		t.Fatal("channel closed without a change")
	default:
	}

	// Cut the TCP connection: the loss and the reconnect both wake us,
	// and Connects tells the new session from the old one.
	if a.dialer.killAll()+b.dialer.killAll() == 0 {
		t.Fatal("no connection to cut")
	}
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatal("no wake-up on the lost connection")
	}
	ch = c.StateChanged()
	if c.State() != StateConnected {
		waitChange(StateConnected)
	}
	if n := c.Stats().Connects; n != 2 {
		t.Fatalf("%d connects after the reconnect, want 2", n)
	}

	a.stop()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatal("no wake-up on Close")
	}
	if st := c.State(); st != StateClosed {
		t.Fatalf("state %v after Close", st)
	}
}
