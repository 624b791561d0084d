package grid

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/mux"
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
	// Up tells that the node is reachable: its connection is up and it
	// answered the call for its stats within the gatherer's
	// Options.PingTimeout, with its stats or with an error of its own.
	// Else Error says why it is down: its connection is down (with the
	// connection's last error), the call failed, or no answer came in
	// time.
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
	// StatsError, on a node that is up, says why Stats is missing: it has
	// no stats handler (then OlderVersion is set), its stats handler
	// failed, or its answer was refused (over 1 MiB, not NodeStats, or
	// another node's).
	StatsError string `json:"stats_error,omitempty"`
	// OlderVersion tells that the node answered that it has no stats
	// handler (HandlerStats): it runs a version from before the handler,
	// as during a rolling upgrade.
	OlderVersion bool `json:"older_version,omitempty"`
	// PeersLeftOut counts the peers the node listed that are not in the
	// gatherer's membership: they are left out of Stats.Grid.Peers (a
	// membership change under way, or a node that lists made-up peers).
	PeersLeftOut int `json:"peers_left_out,omitempty"`
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
// the grid's liveness closes its connection. A peer that answers without
// its stats (a node of an older version has no stats handler) is up, with
// a StatsError.
//
// What a peer answers is checked as this node's own answer is bounded,
// whatever the peer runs: an answer over 1 MiB (and some slack) is
// refused; a section over MaxStatsSectionBytes is replaced by an error,
// and at most MaxStatsSections are kept; names and error texts are
// clipped; and only the peers in this node's membership are kept in its
// Grid.Peers. So MeshStats holds at most about 1 MiB a node.
//
// Each call gathers anew; a server that answers many clients (the
// gridmesh command's /mesh) should share one gathering among them.
func (m *Manager) MeshStats(ctx context.Context) MeshStats {
	ms := MeshStats{From: m.opts.Local, Time: time.Now()}
	hosts := m.Hosts()
	members := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		members[h] = true
	}
	ms.Nodes = make([]MeshNode, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		n := &ms.Nodes[i]
		n.Host = h
		wg.Go(func() { m.gatherNode(ctx, n, members) })
	}
	wg.Wait()
	return ms
}

// gatherNode fills n, whose Host is set; members is the membership.
func (m *Manager) gatherNode(ctx context.Context, n *MeshNode, members map[string]bool) {
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
	b, err := m.callStats(ctx, c)
	var remote *mux.RemoteError
	switch {
	case err == nil:
		n.Up = true
		n.Stats, n.PeersLeftOut, err = decodePeerStats(n.Host, b, members)
		mux.Recycle(b) // decoded: nothing refers to it
		if err != nil {
			n.StatsError = clip(err.Error(), maxStatsError)
		}
	case errors.As(err, &remote) && !errors.Is(err, context.DeadlineExceeded):
		// It answered: it is up, without its stats.
		n.Up = true
		n.OlderVersion = errors.Is(err, mux.ErrUnknownHandler)
		if n.OlderVersion {
			err = fmt.Errorf("no stats handler (an older version): %w", err)
		}
		n.StatsError = clip(err.Error(), maxStatsError)
	default:
		n.Error = clip(err.Error(), maxStatsError)
	}
}

// callStats calls c's stats handler within PingTimeout.
func (m *Manager) callStats(ctx context.Context, c *Connection) ([]byte, error) {
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
	return b, nil
}
