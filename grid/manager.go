package grid

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/coder/websocket"

	"github.com/gridmesh/gridmesh/handlers"
)

// Manager keeps one Connection to every other node of the grid and serves
// the connections that peers open to this node (mount Handler). Every
// Connection shares the Manager's handler Registry.
//
// A Manager owns its goroutines: one dial loop for each peer this node
// dials, plus, per live connection, the goroutine that pings it (the dial
// loop itself, or the HTTP handler goroutine that accepted it) and the mux
// session's own, and a drain per peer SetHosts removed. Close waits for
// all of them.
//
// All methods may be called concurrently.
type Manager struct {
	opts      Options // defaulted; Hosts sorted (the first list: see hosts)
	instance  string  // this process's instance ID
	reg       *handlers.Registry
	client    *http.Client
	transport *http.Transport
	replay    *replayCache
	// handshakes holds a token for each handshake being checked
	// (Options.MaxPendingConns).
	handshakes chan struct{}

	ctx       context.Context // cancelled by shutdown; parent of every socket
	cancel    context.CancelFunc
	stopWatch func() bool // stops watching NewManager's ctx

	mu     sync.Mutex // guards closed against wg.Add, and the membership
	closed bool
	wg     sync.WaitGroup // dial loops, HTTP handlers, accepted sessions, drains
	// The membership (SetHosts), guarded by mu.
	hosts     []string               // sorted, Local included
	hostsHash string                 // of hosts, sent in handshakes
	conns     map[string]*Connection // by host: the current peers
	peers     []*Connection          // the same, sorted by host
	members   chan struct{}          // closed and replaced on every change

	rejMu   sync.Mutex
	rejSeen map[string]bool // "from\x00kind" (or "kind" for an unknown from) of logged rejections

	sections statsSections // SetStatsSection's, for HandlerStats (nodestats.go)
}

// NewManager checks opts and starts a Manager: it begins dialing the peers
// this node dials at once; peers that dial this node are served by
// Handler. Cancelling ctx closes the Manager as Close does, without waiting.
func NewManager(ctx context.Context, opts Options) (*Manager, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := o.Mux.Validate(); err != nil {
		return nil, optionError("Mux", "%v", err)
	}
	m := &Manager{
		opts:       o,
		instance:   newID(),
		reg:        o.Registry,
		members:    make(chan struct{}),
		replay:     newReplayCache(o.ReplayCacheSize),
		handshakes: make(chan struct{}, o.MaxPendingConns),
		rejSeen:    make(map[string]bool),
	}
	if m.reg == nil {
		m.reg = new(handlers.Registry)
	}
	if err := m.registerStats(); err != nil {
		return nil, err
	}
	m.transport = &http.Transport{
		DialContext:     o.NetDial,
		TLSClientConfig: o.TLSConfig.Clone(),
		// Like the dial, the TLS handshake runs apart from the request:
		// without a bound, a peer that accepts and never answers would
		// keep one socket per retry until Close.
		TLSHandshakeTimeout: o.HandshakeTimeout,
		DisableKeepAlives:   true, // a refused handshake leaves no idle socket
		ForceAttemptHTTP2:   false,
	}
	m.client = &http.Client{Transport: m.transport}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Lock()
	m.setHostsLocked(o.Hosts) // starts the dial loops
	m.mu.Unlock()
	m.stopWatch = context.AfterFunc(ctx, m.shutdown)
	return m, nil
}

// Local returns this node's name.
func (m *Manager) Local() string { return m.opts.Local }

// Connection returns the connection to host, or nil if host is not one of
// the current peers (this node itself included).
func (m *Manager) Connection(host string) *Connection {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conns[host]
}

// Connections returns the connections to the current peers, sorted by
// host. A peer that SetHosts removed is no longer among them.
func (m *Manager) Connections() []*Connection {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.peers)
}

// Registry returns the handler registry every connection serves from.
func (m *Manager) Registry() *handlers.Registry { return m.reg }

// RegisterSingleHandler registers h to serve single requests for id from
// every peer. Registering an id twice is an error.
func (m *Manager) RegisterSingleHandler(id handlers.HandlerID, h handlers.SingleHandler) error {
	return m.reg.RegisterSingle(id, h)
}

// RegisterInlineHandler registers h, as RegisterSingleHandler does, to run
// on the goroutine that reads each peer's connection rather than on a
// worker of its own: for handlers that finish in microseconds without
// waiting (handlers.Registry.RegisterInline says what it spares, and what
// happens to one that runs longer than Options' inline budget).
func (m *Manager) RegisterInlineHandler(id handlers.HandlerID, h handlers.SingleHandler) error {
	return m.reg.RegisterInline(id, h)
}

// Handler returns the http.Handler that accepts peers' connections. Mount
// it at Options.RoutePath (DefaultRoutePath) on the server listening at
// this node's URL (StartNode does). Give that server timeouts
// (ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout): the upgrade
// clears the deadlines they set, so they do not apply to a grid session.
// Every answer but the upgrade closes its connection, and at most
// Options.MaxPendingConns handshakes are checked at once. After Close the
// handler answers 503.
func (m *Manager) Handler() http.Handler { return http.HandlerFunc(m.serveHTTP) }

func (m *Manager) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !m.enter() {
		refuse(w, http.StatusServiceUnavailable, ErrClosed.Error())
		return
	}
	defer m.wg.Done()
	h, ok := m.checkHandshake(w, r)
	if !ok {
		return
	}
	tw := &tuningWriter{ResponseWriter: w, limit: m.opts.UnsentLimit}
	ws, err := websocket.Accept(tw, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept has answered the request
	}
	m.forgetRejections(h.from)
	c := m.Connection(h.from)
	if c == nil { // removed by SetHosts since the handshake was checked
		ws.Close(websocket.StatusPolicyViolation, "removed from the host list")
		return
	}
	// The session runs on a goroutine of its own, so that this one, whose
	// stack grew deep in net/http and the upgrade, can end: an idle
	// connection keeps only a small stack.
	m.wg.Add(1) // within this handler's own count: Close cannot be waiting yet
	go func() {
		defer m.wg.Done()
		c.serve(ws, tw.cork, h.instance)
	}()
}

// enter registers a handler goroutine with wg, unless the Manager closed.
func (m *Manager) enter() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// logRejection logs a refused handshake once per peer and kind of
// rejection. The header fields of a rejected dialer are unverified, so
// only a name in the host list counts as a peer: a dialer that sends a
// new unknown name each time is logged once per kind, not once per name,
// and what it sent is clipped in the log.
func (m *Manager) logRejection(from, addr string, rej *rejection) {
	key := rej.kind
	if m.Connection(from) != nil {
		key = from + "\x00" + rej.kind
	}
	m.rejMu.Lock()
	seen := m.rejSeen[key]
	if !seen {
		m.rejSeen[key] = true // bounded: (hosts + 1) × the kinds in handshake.go
	}
	m.rejMu.Unlock()
	if !seen {
		m.opts.Logger.Warn("grid: handshake rejected", "from", clip(from, 128), "addr", addr, "status", rej.status, "reason", clip(rej.reason, 256))
	}
}

// clip shortens s to at most n bytes for a log line, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// forgetRejections lets the next rejection of from be logged again.
func (m *Manager) forgetRejections(from string) {
	m.rejMu.Lock()
	defer m.rejMu.Unlock()
	for k := range m.rejSeen {
		if len(k) > len(from) && k[:len(from)] == from && k[len(from)] == 0 {
			delete(m.rejSeen, k)
		}
	}
}

// Close closes the Manager: the handler refuses new peers, every
// connection is closed (calls in flight fail with ErrDisconnected, later
// calls with ErrClosed), and Close waits for every goroutine the Manager
// started. Handlers still running must honour their context. Close is
// idempotent and returns nil.
func (m *Manager) Close() error {
	m.shutdown()
	m.wg.Wait()
	m.stopWatch()
	m.transport.CloseIdleConnections()
	return nil
}

// Context returns a context that ends when the Manager starts closing
// (Close, or NewManager's ctx ending), before its connections close: work
// that a handler hands to a goroutine of its own, beyond its call, stops
// with it.
func (m *Manager) Context() context.Context { return m.ctx }

// shutdown starts closing the Manager without waiting.
func (m *Manager) shutdown() {
	m.mu.Lock()
	closed := m.closed
	m.closed = true
	m.mu.Unlock()
	if closed {
		return
	}
	m.cancel()
	for _, c := range m.Connections() {
		c.shutdown()
	}
}

// WaitForConnect waits until every current connection is up, or ctx ends.
func (m *Manager) WaitForConnect(ctx context.Context) error {
	for _, c := range m.Connections() {
		if err := c.WaitForConnect(ctx); err != nil {
			return fmt.Errorf("grid: wait for %s: %w", c.host, err)
		}
	}
	return nil
}

// errReplaced is why a session ends when a newer one takes its place.
var errReplaced = errors.New("replaced by a newer connection")
