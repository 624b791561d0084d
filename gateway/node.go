package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gridmesh/gridmesh/grid"
)

// Node is a grid Manager served over HTTP on its own listener: one node of
// the grid, gateway or worker.
type Node struct {
	Manager *grid.Manager
	mux     *http.ServeMux
	srv     *http.Server
	served  chan struct{}
}

// StartNode starts a grid Manager with opts and serves it on ln at
// opts.RoutePath (grid.DefaultRoutePath by default), and its stats at
// grid.DefaultStatsPath (JSON) and grid.DefaultMetricsPath (Prometheus
// text). opts.Local must be the URL ln is reachable at.
func StartNode(ctx context.Context, ln net.Listener, opts grid.Options) (*Node, error) {
	m, err := grid.NewManager(ctx, opts)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	route := opts.RoutePath
	if route == "" {
		route = grid.DefaultRoutePath
	}
	mux := http.NewServeMux()
	mux.Handle(route, m.Handler())
	mux.Handle(grid.DefaultStatsPath, m.StatsHandler())     // for gridmesh status
	mux.Handle(grid.DefaultMetricsPath, m.MetricsHandler()) // for Prometheus
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
// (e.g. a Metrics's handlers at MetricsPath and StatsPath). It may be
// called while the node serves.
func (n *Node) Handle(path string, h http.Handler) { n.mux.Handle(path, h) }

// ListenNode listens on addr and starts a node there; see StartNode.
func ListenNode(ctx context.Context, addr string, opts grid.Options) (*Node, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s: %w", addr, err)
	}
	return StartNode(ctx, ln, opts)
}

// Close closes the Manager (calls in flight to and from this node fail
// with grid.ErrDisconnected) and the HTTP server, and waits for both.
func (n *Node) Close() error {
	err := n.Manager.Close()
	if cerr := n.srv.Close(); cerr != nil && !errors.Is(cerr, http.ErrServerClosed) && err == nil {
		err = cerr
	}
	<-n.served
	return err
}
