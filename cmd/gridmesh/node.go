package main

import (
	"context"
	"flag"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/config"
	"github.com/gridmesh/gridmesh/internal/ops"
)

// parseConfigFlags parses the flags of the gateway and worker commands:
// -config (default name.yaml), the logging flags, and those more
// defines. It returns the configuration file and the logger asked for.
func parseConfigFlags(name string, args []string, out io.Writer, more ...func(*flag.FlagSet)) (string, *slog.Logger, error) {
	fs := newFlags(name, out)
	path := fs.String("config", name+".yaml", "configuration file (YAML)")
	var lf logFlags
	lf.register(fs)
	for _, f := range more {
		f(fs)
	}
	if err := parseFlags(fs, args, false); err != nil {
		return "", nil, err
	}
	logger, err := lf.logger()
	return *path, logger, err
}

// listenNode starts the grid node that g describes, logging to logger
// and tracing to tp (nil: off), and returns it with its listen address.
// The node outlives ctx; the caller closes it.
func listenNode(ctx context.Context, g config.Grid, tp trace.TracerProvider, logger *slog.Logger) (*grid.Node, string, error) {
	addr, opts, err := nodeOptions(g, tp, logger)
	if err != nil {
		return nil, "", err
	}
	node, err := grid.ListenNode(context.WithoutCancel(ctx), addr, opts)
	if err != nil {
		return nil, "", err
	}
	return node, addr, nil
}

// nodeOptions returns the listen address and grid options of the node
// that g describes, logging to logger and tracing to tp (nil: off).
func nodeOptions(g config.Grid, tp trace.TracerProvider, logger *slog.Logger) (string, grid.Options, error) {
	addr, err := g.ListenAddr()
	if err != nil {
		return "", grid.Options{}, err
	}
	opts, err := g.Options(logger)
	gridTracing(&opts, tp)
	return addr, opts, err
}

// gridTracing has the grid trace its calls to tp (nil: off): client and
// server spans per call, the trace context carried to the peer, so that
// the gateway's and the workers' traces join.
func gridTracing(opts *grid.Options, tp trace.TracerProvider) {
	opts.TracerProvider = tp
}

// nodeStats is what a node's operations port serves at /stats, and what
// `gridmesh status` reads: the grid's stats and the node's parts', each
// absent when the node has no such part.
type nodeStats struct {
	// Grid is the node's grid.ManagerStats: connections, per peer under
	// "peers".
	Grid *grid.ManagerStats `json:"grid,omitempty"`
	// Gateway and Dispatch are a gateway node's (gateway.NodeStats).
	Gateway  *gateway.Stats         `json:"gateway,omitempty"`
	Dispatch *gateway.DispatchStats `json:"dispatch,omitempty"`
	// Worker and Processes are a worker node's (worker.NodeStats).
	Worker    *worker.Status       `json:"worker,omitempty"`
	Processes *worker.ProcessStats `json:"processes,omitempty"`
}

// opsNode is what a node's operations port serves.
type opsNode struct {
	manager *grid.Manager
	gateway *gateway.Metrics // nil on a worker
	worker  *worker.Metrics  // nil on a gateway
	health  func() error
	ready   func() error
}

// stats returns the node's nodeStats.
func (n opsNode) stats() any {
	gs := n.manager.Stats()
	st := nodeStats{Grid: &gs}
	if n.gateway != nil {
		s := n.gateway.Stats()
		st.Gateway, st.Dispatch = s.Gateway, s.Dispatch
	}
	if n.worker != nil {
		s := n.worker.Stats()
		st.Worker, st.Processes = s.Worker, s.Processes
	}
	return st
}

// setSections adds the node's parts to its grid stats, under the names
// /stats gives them ("gateway" and "dispatch", or "worker" and
// "processes"), so that every node's status page and `gridmesh status
// -mesh` show them (grid.Manager.SetStatsSection).
func (n opsNode) setSections() error {
	sections := map[string]func(context.Context) any{}
	if g := n.gateway; g != nil {
		sections["gateway"] = func(context.Context) any { return g.Stats().Gateway }
		sections["dispatch"] = func(context.Context) any { return g.Stats().Dispatch }
	}
	if w := n.worker; w != nil {
		sections["worker"] = func(context.Context) any { return w.Stats().Worker }
		if w.Processes != nil {
			sections["processes"] = func(context.Context) any { return w.Stats().Processes }
		}
	}
	for name, fn := range sections {
		if err := n.manager.SetStatsSection(name, fn); err != nil {
			return err
		}
	}
	return nil
}

// startOps adds n's parts to its grid stats (setSections), then starts
// the operations port that cfg describes for n, or returns nil when cfg
// has none.
func startOps(cfg *config.Ops, g config.Grid, n opsNode, logger *slog.Logger) (*ops.Server, error) {
	if err := n.setSections(); err != nil {
		return nil, err
	}
	if cfg.OpsListen == "" {
		return nil, nil
	}
	collectors := []ops.TextWriter{n.manager.WriteMetrics}
	if n.gateway != nil {
		collectors = append(collectors, n.gateway.WriteMetrics)
	}
	if n.worker != nil {
		collectors = append(collectors, n.worker.WriteMetrics)
	}
	// The grid's per-handler and per-peer metrics are a client_golang
	// collector of their own; the gateway's and the worker's, histograms
	// included, are text (promtext) that the text collector carries.
	reg, err := ops.NewRegistry(ops.NewTextCollector(collectors...), n.manager.Collector())
	if err != nil {
		return nil, err
	}
	tlsConfig, err := cfg.OpsTLSConfig(g, logger)
	if err != nil {
		return nil, err
	}
	srv, err := ops.Listen(ops.Options{
		Listen: cfg.OpsListen, Token: cfg.OpsToken, Pprof: cfg.OpsPprof, TLSConfig: tlsConfig,
		Health: n.health, Ready: n.ready, Stats: n.stats, Gatherer: reg, Logger: logger,
		Mesh: func(ctx context.Context) any { return n.manager.MeshStats(ctx) },
	})
	if err != nil {
		return nil, err
	}
	logger.Info("ops: serving /metrics, /healthz, /readyz, /stats, /mesh and the status page at /", "listen", srv.Addr().String(),
		"tls", tlsConfig != nil, "token", cfg.OpsToken != "", "pprof", cfg.OpsPprof)
	return srv, nil
}
