package grid

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// MeshStats is the whole mesh as one node sees it (Manager.MeshStats):
// every node of its membership with the stats it answered, or why it did
// not.
type MeshStats struct {
	From  string     `json:"from"` // the node that gathered them
	Time  time.Time  `json:"time"` // when it started
	Nodes []MeshNode `json:"nodes"`
}

// MeshNode is one node in MeshStats.
type MeshNode struct {
	Host string `json:"host"`
	Self bool   `json:"self,omitempty"` // the node that gathered
	// State is the gathering node's connection to this one (connected,
	// for itself).
	State State `json:"state"`
	// Up tells that the node answered with its stats; else Error says
	// why not: its connection is down (with the connection's last
	// error), the call failed, or no answer came within the gatherer's
	// Options.PingTimeout.
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
	// CallSeconds is how long the call for its stats took.
	CallSeconds float64    `json:"call_seconds"`
	Stats       *NodeStats `json:"stats,omitempty"`
}

// MeshStats gathers the stats of every node in this node's membership
// (Hosts, so a node that is down is listed too), sorted by host: its own,
// and each peer's through the peer's stats handler (HandlerStats), called
// on every peer at once, each within Options.PingTimeout (or until ctx
// ends). A peer whose connection is not up is not called: it is reported
// down with its state and last error at once. A peer that answers late is
// reported down as well, so a node that stopped (a frozen process, a
// half-open connection) shows as down within one PingTimeout even before
// the grid's liveness closes its connection.
func (m *Manager) MeshStats(ctx context.Context) MeshStats {
	ms := MeshStats{From: m.opts.Local, Time: time.Now()}
	hosts := m.Hosts()
	ms.Nodes = make([]MeshNode, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		n := &ms.Nodes[i]
		n.Host = h
		wg.Go(func() { m.gatherNode(ctx, n) })
	}
	wg.Wait()
	return ms
}

// gatherNode fills n, whose Host is set.
func (m *Manager) gatherNode(ctx context.Context, n *MeshNode) {
	start := time.Now()
	defer func() { n.CallSeconds = time.Since(start).Seconds() }()
	if n.Host == m.opts.Local {
		st := m.NodeStats(ctx)
		n.Self, n.State, n.Up, n.Stats = true, StateConnected, true, &st
		return
	}
	c := m.Connection(n.Host)
	if c == nil {
		n.State, n.Error = StateRemoved, ErrPeerRemoved.Error()
		return
	}
	cs := c.Stats()
	n.State = cs.State
	if cs.State != StateConnected {
		n.Error = cs.State.String()
		if cs.LastError != "" {
			n.Error += ": " + clip(cs.LastError, maxStatsError)
		}
		return
	}
	st, err := m.peerStats(ctx, c)
	if err != nil {
		n.Error = clip(err.Error(), maxStatsError)
		return
	}
	n.Up, n.Stats = true, st
}

// peerStats calls c's stats handler within PingTimeout.
func (m *Manager) peerStats(ctx context.Context, c *Connection) (*NodeStats, error) {
	d := m.opts.PingTimeout
	ctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("no answer within %v", d))
	defer cancel()
	b, err := c.Request(ctx, HandlerStats, nil)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return nil, cause
		}
		return nil, err
	}
	var st NodeStats
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("grid: stats of %s: %w", c.host, err)
	}
	if st.Host != c.host {
		return nil, fmt.Errorf("grid: stats of %s name another node, %q", c.host, clip(st.Host, 128))
	}
	return &st, nil
}
