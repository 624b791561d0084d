package grid

import (
	"time"

	"github.com/gridmesh/gridmesh/mux"
)

// ConnectionStats is a snapshot of one Connection.
type ConnectionStats struct {
	Host         string
	State        State
	Dials        bool   // this node opens the connection
	PeerInstance string // the peer's instance ID, once it connected
	Connects     uint64 // sessions established
	Reconnects   uint64 // sessions established after the first
	LastConnect  time.Time
	LastRTT      time.Duration // round trip of the last answered ping
	LastError    string        // why the last session or attempt failed
	// Stats holds the mux counters summed over every session so far
	// (bytes, frames in, writes (one WebSocket message each), requests),
	// and the gauges InFlight, Running, Unanswered, StreamsOut, StreamsIn
	// and QueuedBytes of the live session only: with no session up they
	// are 0. OrphanedHandlers counts the handlers still running for
	// sessions already gone (they ignore their cancelled context; their
	// answers will be dropped): the connection does not wait for them.
	mux.Stats
}

// Stats returns a snapshot of the connection's counters.
func (c *Connection) Stats() ConnectionStats {
	c.mu.Lock()
	st := ConnectionStats{
		Host: c.host, State: c.state, Dials: c.dials, PeerInstance: c.peerInst,
		Connects: c.connects, LastConnect: c.lastConnect, LastError: c.lastErr,
		LastRTT: time.Duration(c.rtt.Load()), Stats: c.totals,
	}
	live := append([]*session(nil), c.live...)
	c.mu.Unlock()
	if st.Connects > 0 {
		st.Reconnects = st.Connects - 1
	}
	for _, h := range live {
		st.Stats = st.Stats.Add(h.s.Stats())
	}
	return st
}

// ManagerStats is a snapshot of a Manager: the sum over its connections
// and each connection's own.
type ManagerStats struct {
	Local      string
	Connected  int    // connections up
	Reconnects uint64 // summed over connections
	mux.Stats         // summed over connections
	Peers      map[string]ConnectionStats
}

// Stats returns a snapshot of every connection's counters and their sum.
func (m *Manager) Stats() ManagerStats {
	peers := m.Connections()
	st := ManagerStats{Local: m.opts.Local, Peers: make(map[string]ConnectionStats, len(peers))}
	for _, c := range peers {
		cs := c.Stats()
		st.Peers[c.host] = cs
		if cs.State == StateConnected {
			st.Connected++
		}
		st.Reconnects += cs.Reconnects
		st.Stats = st.Stats.Add(cs.Stats)
	}
	return st
}
