package grid

import (
	"slices"
	"time"
)

// SetHosts changes the grid's membership while it runs. hosts follows the
// rules of Options.Hosts (this node included, each name once, any order);
// a bad list is refused with an error matching ErrInvalidOptions and
// changes nothing. SetHosts returns at once: for each new peer it starts
// dialing (or awaits the peer, by ShouldDial), and each peer left out is
// removed:
//
//   - the removed peer's Connection leaves Connections and Connection at
//     once; new calls on it, and streams opened on it, fail at once with an
//     error matching ErrPeerRemoved (and ErrDisconnected); the peer's new
//     handshakes are refused (403, unknown host);
//   - calls and streams in flight, both ways, keep the session until they
//     are done, for at most Options.RemoveGrace; then the session closes,
//     and calls still in flight fail with ErrPeerRemoved;
//   - the Connection then reaches StateRemoved, final, which wakes
//     Connection.StateChanged.
//
// Every change wakes the readers of MembershipChanged. SetHosts is safe to
// call concurrently with calls, with other SetHosts (the last one wins)
// and with Close; after Close it returns an error matching ErrClosed.
func (m *Manager) SetHosts(hosts []string) error {
	o := m.opts
	o.Hosts = hosts
	if err := o.checkHosts(); err != nil {
		return err
	}
	sorted := slices.Clone(hosts)
	slices.Sort(sorted)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.setHostsLocked(sorted)
	return nil
}

// setHostsLocked makes sorted (checked) the membership; m.mu is held and
// the Manager is not closed.
func (m *Manager) setHostsLocked(sorted []string) {
	if slices.Equal(sorted, m.hosts) {
		return
	}
	old := m.conns
	m.hosts = sorted
	m.hostsHash = hostsHash(sorted)
	m.conns = make(map[string]*Connection, len(sorted))
	m.peers = m.peers[:0:0]
	for _, h := range sorted {
		if h == m.opts.Local {
			continue
		}
		c := old[h]
		if c == nil {
			c = newConnection(m, h)
			if c.dials {
				m.wg.Add(1) // under m.mu, before closed is set: Close waits for it
				go c.dialLoop()
			}
		}
		m.conns[h] = c
		m.peers = append(m.peers, c)
	}
	for h, c := range old {
		if m.conns[h] == nil {
			c.mu.Lock()
			c.removed = true // new calls fail from now on
			c.mu.Unlock()
			m.wg.Add(1)
			go c.drain()
		}
	}
	if old != nil {
		m.opts.Logger.Info("grid: membership changed", "hosts", len(sorted))
	}
	close(m.members)
	m.members = make(chan struct{})
}

// Hosts returns the current host list, sorted, this node included.
func (m *Manager) Hosts() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.hosts)
}

// MembershipChanged returns a channel that is closed at the next change of
// the host list (SetHosts). As with Connection.StateChanged: take the
// channel first, then read Connections or Hosts, and take it again after
// every wake-up; changes in a burst may wake a reader once. It costs the
// grid nothing while nobody waits.
func (m *Manager) MembershipChanged() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members
}

// currentHash is the hash of the current host list.
func (m *Manager) currentHash() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hostsHash
}

// drain retires a removed connection: no new calls from now on; the
// session stays until nothing is in flight either way, or RemoveGrace
// passes, or the Manager closes; then the connection stops and reaches
// StateRemoved. It runs on a goroutine the Manager waits for. It looks
// at the session's gauges every drainStep: the mux has no idle signal,
// and a drain is rare and bounded.
func (c *Connection) drain() {
	defer c.m.wg.Done()
	c.m.opts.Logger.Info("grid: peer removed", "peer", c.host, "grace", c.m.opts.RemoveGrace)
	grace := time.NewTimer(c.m.opts.RemoveGrace)
	defer grace.Stop()
	step := time.NewTicker(drainStep)
	defer step.Stop()
	for !c.idle() {
		select {
		case <-grace.C:
			c.m.opts.Logger.Warn("grid: removed peer's calls outlived the grace period", "peer", c.host)
			c.finish()
			return
		case <-c.m.ctx.Done():
			c.finish()
			return
		case <-step.C:
		}
	}
	c.finish()
}

// drainStep is how often a drain looks whether the session is idle.
const drainStep = 10 * time.Millisecond

// idle reports whether the session in use, if any, has nothing in flight
// in either direction.
func (c *Connection) idle() bool {
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur == nil {
		return true
	}
	st := cur.s.Stats()
	return st.InFlight == 0 && st.Unanswered == 0 && st.StreamsOut == 0 && st.StreamsIn == 0
}

// finish stops a removed connection: its session ends (the goroutine
// serving it moves it to StateRemoved) and its dial loop returns; with no
// session it moves to StateRemoved here.
func (c *Connection) finish() {
	c.stop()
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	var changes []stateChange
	if c.cur == nil && c.state != StateClosed {
		changes = c.setLocked(StateRemoved, nil)
	}
	c.mu.Unlock()
	c.report(changes, ErrPeerRemoved.Error())
	if t := c.m.opts.tracing; t != nil {
		t.ForgetPeer(c.host) // its span setups (a re-added peer makes them again)
	}
}
