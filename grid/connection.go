package grid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/backoff"
	"github.com/gridmesh/gridmesh/mux"
)

// State is the state of a Connection.
//
//	Connecting ──session up──▶ Connected ──lost, replaced──▶ Connecting
//	     ├──────────── Manager.Close (from any state) ──────────▶ Closed
//	     └──── Manager.SetHosts left the peer out, drained ─────▶ Removed
type State int32

const (
	// StateConnecting: no session; the dialing side is dialing or backing
	// off, the accepting side waits for the peer. The initial state.
	StateConnecting State = iota
	// StateConnected: a session is up and the peer has answered its hello.
	StateConnected
	// StateClosed: the Manager was closed. Final.
	StateClosed
	// StateRemoved: Manager.SetHosts left the peer out, and its session
	// (if any) has drained or used up Options.RemoveGrace. Final: if the
	// peer is listed again, it gets a new Connection.
	StateRemoved
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateClosed:
		return "closed"
	case StateRemoved:
		return "removed"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Connection is this node's link to one peer. It holds at most one mux
// session at a time and replaces it when it is lost: the side chosen by
// ShouldDial redials with backoff, the other side waits for the next
// incoming connection. A Connection lives as long as its Manager, or
// until Manager.SetHosts leaves its peer out (StateRemoved).
//
// All methods may be called concurrently.
type Connection struct {
	m       *Manager
	host    string
	url     string          // the WebSocket URL dialed, when dials
	dials   bool            // this node opens the connection
	baseCtx context.Context // parent of handler contexts: names the peer
	// ctx ends when the Manager closes or the peer's removal has drained:
	// it stops the dial loop and is the parent of every session's ctx.
	ctx  context.Context
	stop context.CancelFunc

	// notifyMu orders state changes and their notifications; it is taken
	// before mu and held while OnStateChange runs.
	notifyMu sync.Mutex

	mu          sync.Mutex
	state       State
	changed     chan struct{} // closed and replaced on every state change
	cur         *session      // the session in use, nil when not connected
	live        []*session    // sessions not yet retired (ended ones wait for their handlers), cur included
	totals      mux.Stats     // counters of retired sessions; no gauges
	connects    uint64
	lastConnect time.Time
	lastErr     string
	lastLogged  string // the last failure logged, to log each reason once
	peerInst    string // the peer's instance ID, once known
	removed     bool   // SetHosts left the peer out: no new calls, no new sessions

	rtt     atomic.Int64 // last ping round trip, in nanoseconds
	rttHist rttHist      // ping round trips, for Manager.Collector
}

// session is one mux session with the peer and what the grid knows of it.
type session struct {
	s        *mux.Session
	pipe     *wsPipe // read only by tests (both ends corked)
	peerInst string
	// ctx ends when a newer session takes this one's place (replace) or
	// the Manager closes; it bounds the keep-alive's pings too, so that a
	// replacement ends the session at once even while a ping waits.
	ctx     context.Context
	replace context.CancelFunc
}

// endReason says why h.ctx ended.
func (c *Connection) endReason() error {
	switch {
	case c.m.ctx.Err() != nil:
		return ErrClosed
	case c.isRemoved():
		return ErrPeerRemoved
	}
	return errReplaced
}

// isRemoved reports whether SetHosts left the peer out.
func (c *Connection) isRemoved() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removed
}

var _ handlers.Requester = (*Connection)(nil)

func newConnection(m *Manager, host string) *Connection {
	c := &Connection{
		m:       m,
		host:    host,
		url:     dialURL(host, m.opts.RoutePath),
		dials:   ShouldDial(m.opts.Local, host),
		changed: make(chan struct{}),
	}
	c.baseCtx = context.WithValue(m.opts.Mux.BaseContext, peerKey{}, host)
	c.ctx, c.stop = context.WithCancel(m.ctx)
	return c
}

// Host returns the peer's name, as given in Options.Hosts.
func (c *Connection) Host() string { return c.host }

// State returns the connection's current state.
func (c *Connection) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Request sends payload to the peer's handler h and returns its answer.
// It fails at once with an error matching ErrDisconnected when the
// connection is not up (call WaitForConnect first to wait for it), and
// with one matching ErrDisconnected when the connection is lost while the
// call is in flight. Once SetHosts removed the peer, a new call fails at
// once, and one in flight that outlives Options.RemoveGrace fails, with
// an error matching both ErrPeerRemoved and ErrDisconnected. ctx's
// deadline travels to the handler; see mux.Session.Request for the rest
// of the contract.
func (c *Connection) Request(ctx context.Context, h handlers.HandlerID, payload []byte) ([]byte, error) {
	s, err := c.session()
	if err != nil {
		return nil, err
	}
	out, err := s.Request(ctx, h, payload)
	if err != nil && errors.Is(err, ErrDisconnected) && c.isRemoved() {
		err = c.removedError(err)
	}
	return out, err
}

// removedError is err, a call's failure after the peer was removed, made
// to match ErrPeerRemoved too.
func (c *Connection) removedError(err error) error {
	return fmt.Errorf("%w: %s: %w", ErrPeerRemoved, c.host, err)
}

// NewStream and OpenStream (stream.go) open streams over the same session
// as Request, with the same connection checks.

// session returns the session in use, or the error a call gets without one.
func (c *Connection) session() (*mux.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == StateClosed:
		return nil, errManagerClosed
	case c.removed:
		return nil, c.removedError(errNotSent)
	case c.cur != nil:
		return c.cur.s, nil
	}
	return nil, fmt.Errorf("%w: %s is not connected (%w)", ErrDisconnected, c.host, ErrNotSent)
}

// WaitForConnect waits until the connection is up. It returns ctx's error
// if ctx ends first, an error matching ErrClosed if the Manager is
// closed, and one matching ErrPeerRemoved once SetHosts removed the peer
// and its session drained (StateRemoved).
func (c *Connection) WaitForConnect(ctx context.Context) error {
	for {
		c.mu.Lock()
		st, ch := c.state, c.changed
		c.mu.Unlock()
		switch st {
		case StateConnected:
			return nil
		case StateClosed:
			return errManagerClosed
		case StateRemoved:
			return c.removedError(ErrDisconnected)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// StateChanged returns a channel that is closed at the connection's next
// state change (a reconnect is two: to StateConnecting and back to
// StateConnected). Take the channel first, then read State or Stats: a
// change after the read closes the channel, so none is missed. Each
// change closes the channel and starts a new one, so take it again after
// every wake-up; changes that come in a burst may wake a reader once.
// Waiting on it costs the grid nothing: no goroutine, no callback, and a
// reader that never looks only holds a closed channel. Stats().Connects
// tells a new session from the old one.
func (c *Connection) StateChanged() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// stateChange is one transition to report.
type stateChange struct{ old, new State }

// setLocked moves to state st and returns the change; c.mu must be held.
func (c *Connection) setLocked(st State, changes []stateChange) []stateChange {
	if st == c.state {
		return changes
	}
	changes = append(changes, stateChange{c.state, st})
	c.state = st
	close(c.changed)
	c.changed = make(chan struct{})
	return changes
}

// report logs and announces changes; c.notifyMu must be held.
func (c *Connection) report(changes []stateChange, why string) {
	for _, ch := range changes {
		log := c.m.opts.Logger
		switch {
		case ch.new == StateConnected:
			log.Info("grid: connected", "peer", c.host, "dialed", c.dials)
		case ch.old == StateConnected:
			log.Info("grid: disconnected", "peer", c.host, "reason", why)
		}
		if f := c.m.opts.OnStateChange; f != nil {
			f(c.host, ch.old, ch.new)
		}
	}
}

// install makes h the session in use, replacing (and so closing) an older
// one. It reports false if the Manager is closed; the caller then closes h.
func (c *Connection) install(h *session) bool {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	if c.state == StateClosed || c.removed {
		c.mu.Unlock()
		return false
	}
	var changes []stateChange
	if old := c.cur; old != nil {
		old.replace()
		changes = c.setLocked(StateConnecting, changes)
	}
	restarted := c.peerInst != "" && c.peerInst != h.peerInst
	c.peerInst = h.peerInst
	c.cur = h
	c.live = append(c.live, h)
	c.connects++
	c.lastConnect = time.Now()
	c.lastErr, c.lastLogged = "", ""
	changes = c.setLocked(StateConnected, changes)
	c.mu.Unlock()
	if restarted {
		c.m.opts.Logger.Info("grid: peer restarted", "peer", c.host, "instance", h.peerInst)
	}
	c.report(changes, "replaced by a newer connection")
	return true
}

// uninstall takes h out of use, if it still is, because of why.
func (c *Connection) uninstall(h *session, why error) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	var changes []stateChange
	if c.cur == h {
		c.cur = nil
		c.lastErr = why.Error()
		switch {
		case c.state == StateClosed:
		case c.removed:
			changes = c.setLocked(StateRemoved, changes)
		default:
			changes = c.setLocked(StateConnecting, changes)
		}
	}
	c.mu.Unlock()
	c.report(changes, why.Error())
}

// retire adds the counters of the closed session h, whose handlers have
// all returned, to the totals; its gauges (all 0 by now) are not summed.
func (c *Connection) retire(h *session) {
	st := h.s.Stats().Counters()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.totals = c.totals.Add(st)
	c.live = slices.DeleteFunc(c.live, func(x *session) bool { return x == h })
}

// shutdown moves the connection to StateClosed; the Manager closes it.
func (c *Connection) shutdown() {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	c.cur = nil
	changes := c.setLocked(StateClosed, nil)
	c.mu.Unlock()
	c.report(changes, ErrClosed.Error())
}

// serve runs a session over ws until it ends, on the goroutine of the dial
// loop, or on one started for the session the HTTP handler accepted.
func (c *Connection) serve(ws *websocket.Conn, cork *corkConn, peerInst string) {
	nc := newWSPipe(ws, cork)
	cfg := c.m.opts.Mux
	cfg.BaseContext = c.baseCtx
	cfg.Peer = c.host
	s, err := mux.NewSession(nc, c.m.reg, cfg)
	if err != nil { // cannot happen: NewManager checked cfg
		nc.Close()
		return
	}
	h := &session{s: s, pipe: nc, peerInst: peerInst}
	h.ctx, h.replace = context.WithCancel(c.ctx)
	defer h.replace()
	select {
	case <-s.Ready():
	case <-s.Done():
	case <-c.ctx.Done():
	}
	if s.Err() != nil || c.ctx.Err() != nil || !c.install(h) {
		if err := s.Err(); err != nil {
			c.noteFailure(fmt.Errorf("grid: session with %s ended before it started: %w", c.host, err))
		}
		c.release(h, false)
		return
	}
	why := c.keepAlive(h)
	c.uninstall(h, why)
	c.release(h, true)
}

// release ends session h without waiting for its handlers, so that the
// dial loop redials at once: user code never keeps the link down. A
// handler that ignores its cancelled context runs on, counted in
// ConnectionStats.OrphanedHandlers, and its answer is dropped; a goroutine
// of the Manager (whose Close waits for it) waits for the handlers and
// then, if h was installed, adds its counters to the totals.
func (c *Connection) release(h *session, installed bool) {
	h.s.Abandon()
	c.m.wg.Add(1) // serve runs on a goroutine the Manager counts: Close cannot be done waiting
	go func() {
		defer c.m.wg.Done()
		h.s.Close()
		if installed {
			c.retire(h)
		}
	}()
}

// dialLoop keeps the connection up from the dialing side until the Manager
// closes or the peer is removed. The Manager waits for it.
func (c *Connection) dialLoop() {
	defer c.m.wg.Done()
	o := &c.m.opts
	b := backoff.Backoff{Base: o.BackoffBase, Max: o.BackoffMax}
	for {
		ws, cork, inst, err := c.dial()
		switch {
		case err == nil:
			start := time.Now()
			c.serve(ws, cork, inst)
			if time.Since(start) >= o.HealthyAfter {
				b.Reset()
			}
		case c.ctx.Err() == nil:
			c.noteFailure(err)
		}
		if c.isRemoved() {
			return // a session that ended during the drain is not redialed
		}
		t := time.NewTimer(b.Next())
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// noteFailure records why connecting failed and logs each distinct reason
// once, not once per retry.
func (c *Connection) noteFailure(err error) {
	reason := err.Error()
	c.mu.Lock()
	c.lastErr = reason
	fresh := reason != c.lastLogged
	c.lastLogged = reason
	c.mu.Unlock()
	if fresh {
		c.m.opts.Logger.Warn("grid: cannot connect", "peer", c.host, "err", err)
	}
}

// dial opens a WebSocket to the peer and runs the handshake. It returns
// the socket, the connection under it (nil if the dialer did not make
// it) and the peer's instance ID.
func (c *Connection) dial() (*websocket.Conn, *corkConn, string, error) {
	m := c.m
	ctx, cancel := context.WithTimeout(c.ctx, m.opts.HandshakeTimeout)
	defer cancel()
	var cork *corkConn
	ctx = context.WithValue(ctx, corkSlot{}, &cork) // filled by Options.NetDial's wrapper
	h := handshake{
		from: m.opts.Local, to: c.host, millis: m.opts.Now().UnixMilli(),
		nonce: newID(), instance: m.instance, hosts: m.currentHash(),
	}
	hdr, err := h.header(m.opts.Authenticator)
	if err != nil {
		return nil, nil, "", err
	}
	ws, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{
		HTTPClient:      m.client,
		HTTPHeader:      hdr,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			return nil, nil, "", fmt.Errorf("%w by %s (HTTP %d): %s", ErrRejected, c.host, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil, nil, "", fmt.Errorf("grid: dial %s: %w", c.host, err)
	}
	inst, err := m.verifyAccept(h, resp.Header)
	if err != nil {
		ws.CloseNow()
		return nil, nil, "", err
	}
	return ws, cork, inst, nil
}

// corkSlot is the context key under which dial asks the dialer for the
// connection it makes.
type corkSlot struct{}

// peerKey is the context key of the peer's host name.
type peerKey struct{}

// PeerFromContext returns the host name of the peer whose request a
// handler is serving, from the handler's context.
func PeerFromContext(ctx context.Context) (host string, ok bool) {
	host, ok = ctx.Value(peerKey{}).(string)
	return host, ok
}
