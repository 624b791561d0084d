package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/config"
)

// runGateway runs a Prime gateway from a YAML configuration until
// SIGINT or SIGTERM, then drains and exits; a second signal cuts the
// drain short (Gateway.Abort).
func runGateway(ctx context.Context, args []string, out io.Writer) error {
	path, logger, err := parseConfigFlags("gateway", args, out)
	if err != nil {
		return err
	}
	cfg, err := config.LoadGateway(path)
	if err != nil {
		return err
	}
	// The node outlives ctx: at a signal the gateway still needs the grid
	// to finish the transactions in flight.
	node, addr, err := listenNode(ctx, cfg.Grid, logger)
	if err != nil {
		return err
	}
	defer node.Close()
	disp := gateway.NewDispatcher(node.Manager, gateway.DispatcherOptions{Logger: logger})
	defer disp.Close()
	defer watchMembership(ctx, node.Manager, path, cfg.Grid, gatewayGrid, logger)()
	journal, err := gateway.OpenJournal(cfg.JournalPath, gateway.JournalOptions{
		Retention: cfg.JournalRetention, MaxAge: cfg.JournalMaxAge, MaxPendingMarks: cfg.JournalMaxPendingMarks, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer journal.Close()
	gw, err := gateway.New(gateway.Options{
		Prime: cfg.PrimeConfig, Runner: disp, Journal: journal,
		TxTimeout: cfg.TransactionTimeout, DrainTimeout: cfg.DrainTimeout, MaxResultBytes: cfg.MaxResultBytes,
		Logger: logger,
	})
	if err != nil {
		return err
	}
	serveMetrics(node, gateway.MetricsPath, gateway.StatsPath, &gateway.Metrics{Gateway: gw, Dispatcher: disp})
	stop := context.AfterFunc(forceContext(ctx), func() {
		logger.Warn("gateway: second signal: closing at once; Prime redelivers what was in flight")
		gw.Abort()
	})
	defer stop()
	logger.Info("gateway: starting", "grid", cfg.Grid.Local, "listen", addr, "prime", cfg.ServerAddress, "journal", cfg.JournalPath)
	return gw.Run(ctx)
}

// parseConfigFlags parses the flags of the gateway and worker commands:
// -config (default name.yaml), -v, and those more defines. It returns the
// configuration file and a logger at the level -v asks for.
func parseConfigFlags(name string, args []string, out io.Writer, more ...func(*flag.FlagSet)) (string, *slog.Logger, error) {
	fs := newFlags(name, out)
	path := fs.String("config", name+".yaml", "configuration file (YAML)")
	verbose := fs.Bool("v", false, "log at debug level")
	for _, f := range more {
		f(fs)
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	return *path, newLogger(*verbose), nil
}

// listenNode starts the grid node that g describes, logging to logger,
// and returns it with its listen address. The node outlives ctx; the
// caller closes it.
func listenNode(ctx context.Context, g config.Grid, logger *slog.Logger) (*grid.Node, string, error) {
	addr, opts, err := nodeOptions(g, logger)
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
// that g describes, logging to logger.
func nodeOptions(g config.Grid, logger *slog.Logger) (string, grid.Options, error) {
	addr, err := g.ListenAddr()
	if err != nil {
		return "", grid.Options{}, err
	}
	opts := g.Options()
	opts.Logger = logger
	return addr, opts, nil
}

// nodeMetrics is a gateway's or a worker's Metrics.
type nodeMetrics interface {
	Handler() http.Handler      // Prometheus text
	StatsHandler() http.Handler // JSON
}

// serveMetrics serves m's Prometheus metrics at metricsPath and its JSON
// stats at statsPath on node.
func serveMetrics(node *grid.Node, metricsPath, statsPath string, m nodeMetrics) {
	node.Handle(metricsPath, m.Handler())
	node.Handle(statsPath, m.StatsHandler())
}

func newLogger(debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
