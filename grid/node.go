package grid

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
)

// Node is a Manager served over HTTP on a listener of its own: one node
// of the grid, serving the grid route alone (mount its stats and metrics
// elsewhere, e.g. on an operations port). Its methods may be called
// concurrently.
type Node struct {
	Manager *Manager
	mux     *http.ServeMux
	srv     *http.Server
	pending *pendingConns
	served  chan struct{}
}

// StartNode starts a grid Manager with opts and serves it on ln at
// opts.RoutePath (DefaultRoutePath by default). opts.Local must be the
// URL ln is reachable at. When Local is https:// or wss://, the node
// serves TLS on ln with opts.TLSConfig, which must then hold a
// certificate (Certificates, GetCertificate or GetConfigForClient) and
// may ask for client certificates (ClientAuth, ClientCAs): the one
// tls.Config serves and dials.
//
// The node's HTTP server bounds every connection that is not a grid
// session: opts.HandshakeTimeout to send each request, as long to be
// answered, as long idle between requests, and at most
// opts.MaxPendingConns such connections at once (see Options). A grid
// connection, once its handshake is verified and upgraded, is no longer
// counted nor timed: the grid's keep-alive watches it.
func StartNode(ctx context.Context, ln net.Listener, opts Options) (*Node, error) {
	ln, err := serveTLS(ln, opts)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	m, err := NewManager(ctx, opts)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	route := opts.RoutePath
	if route == "" {
		route = DefaultRoutePath
	}
	mux := http.NewServeMux()
	mux.Handle(route, m.Handler())
	hs := m.opts.HandshakeTimeout
	n := &Node{
		Manager: m,
		mux:     mux,
		pending: newPendingConns(m.opts.MaxPendingConns, m.opts.Logger),
		served:  make(chan struct{}),
	}
	n.srv = &http.Server{
		Handler: mux,
		// A request has hs to arrive, header and body, and its answer as
		// long to leave; a connection idle for as long between requests
		// is closed. The grid route's upgrade clears the deadlines these
		// set on its connection (tuningWriter.Hijack).
		ReadHeaderTimeout: hs,
		ReadTimeout:       hs,
		WriteTimeout:      hs,
		IdleTimeout:       hs,
		ConnState:         n.pending.connState,
		// TLS handshake failures (a peer without a valid certificate) and
		// the like, to the grid's log rather than the process's stderr.
		ErrorLog: slog.NewLogLogger(m.opts.Logger.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(n.served)
		_ = n.srv.Serve(ln)
	}()
	return n, nil
}

// Handle serves h at path on the node's HTTP server, beside the grid.
// The gridmesh command serves nothing there but the grid; its stats and
// metrics go to an operations port of their own. It may be called while
// the node serves.
func (n *Node) Handle(path string, h http.Handler) { n.mux.Handle(path, h) }

// ListenNode listens on addr and starts a node there; see StartNode.
func ListenNode(ctx context.Context, addr string, opts Options) (*Node, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grid: listen %s: %w", addr, err)
	}
	return StartNode(ctx, ln, opts)
}

// Close closes the Manager (calls in flight to and from this node fail
// with ErrDisconnected) and the HTTP server, and waits for both.
func (n *Node) Close() error {
	err := n.Manager.Close()
	if cerr := n.srv.Close(); cerr != nil && !errors.Is(cerr, http.ErrServerClosed) && err == nil {
		err = cerr
	}
	<-n.served
	return err
}

// serveTLS wraps ln in TLS when opts.Local is an https:// or wss:// URL.
func serveTLS(ln net.Listener, opts Options) (net.Listener, error) {
	u, err := parseHost(opts.Local)
	if err != nil || (u.Scheme != "https" && u.Scheme != "wss") {
		return ln, nil // NewManager reports a bad Local
	}
	c := opts.TLSConfig
	if c == nil || (len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil) {
		return ln, optionError("TLSConfig", "Local %q is served over TLS but TLSConfig holds no certificate", opts.Local)
	}
	c = c.Clone()
	c.NextProtos = []string{"http/1.1"} // the WebSocket upgrade is HTTP/1.1
	return tls.NewListener(ln, c), nil
}
