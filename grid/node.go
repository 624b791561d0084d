package grid

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Node is a Manager served over HTTP on a listener of its own: one node
// of the grid, with its stats and metrics beside the grid route. Its
// methods may be called concurrently.
type Node struct {
	Manager *Manager
	mux     *http.ServeMux
	srv     *http.Server
	served  chan struct{}
}

// StartNode starts a grid Manager with opts and serves it on ln at
// opts.RoutePath (DefaultRoutePath by default), and its stats at
// DefaultStatsPath (JSON) and DefaultMetricsPath (Prometheus
// text). opts.Local must be the URL ln is reachable at.
func StartNode(ctx context.Context, ln net.Listener, opts Options) (*Node, error) {
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
	mux.Handle(DefaultStatsPath, m.StatsHandler())     // for gridmesh status
	mux.Handle(DefaultMetricsPath, m.MetricsHandler()) // for Prometheus
	n := &Node{
		Manager: m,
		mux:     mux,
		srv:     &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		served:  make(chan struct{}),
	}
	go func() {
		defer close(n.served)
		_ = n.srv.Serve(ln)
	}()
	return n, nil
}

// Handle serves h at path on the node's HTTP server, beside the grid
// (e.g. a gateway's or a worker's metrics). It may be
// called while the node serves.
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
