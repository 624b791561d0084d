package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/gridmesh/gridmesh/gateway"
)

// runGateway runs a Prime gateway from a YAML configuration until
// SIGINT or SIGTERM, then drains and exits.
func runGateway(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("gateway", out)
	path := fs.String("config", "gateway.yaml", "configuration file (YAML)")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := gateway.LoadGatewayConfig(*path)
	if err != nil {
		return err
	}
	logger := newLogger(*verbose)
	addr, err := cfg.Grid.ListenAddr()
	if err != nil {
		return err
	}
	opts := cfg.Grid.Options()
	opts.Logger = logger
	// The node outlives ctx: at a signal the gateway still needs the grid
	// to finish the transactions in flight.
	node, err := gateway.ListenNode(context.WithoutCancel(ctx), addr, opts)
	if err != nil {
		return err
	}
	defer node.Close()
	disp := gateway.NewDispatcher(node.Manager, gateway.DispatcherOptions{Logger: logger})
	defer disp.Close()
	journal, err := gateway.OpenJournal(cfg.JournalPath, gateway.JournalOptions{Retention: cfg.JournalRetention, MaxAge: cfg.JournalMaxAge, Logger: logger})
	if err != nil {
		return err
	}
	defer journal.Close()
	gw, err := gateway.New(gateway.Options{
		Prime: cfg.PrimeConfig, Runner: disp, Journal: journal,
		TxTimeout: cfg.TransactionTimeout, DrainTimeout: cfg.DrainTimeout, Logger: logger,
	})
	if err != nil {
		return err
	}
	metrics := &gateway.Metrics{Gateway: gw, Dispatcher: disp}
	node.Handle(gateway.MetricsPath, metrics.Handler())
	node.Handle(gateway.StatsPath, metrics.StatsHandler())
	logger.Info("gateway: starting", "grid", cfg.Grid.Local, "listen", addr, "prime", cfg.ServerAddress, "journal", cfg.JournalPath)
	return gw.Run(ctx)
}

func newLogger(debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
