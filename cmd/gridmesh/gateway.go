package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/gridmesh/gridmesh/gateway"
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
	tp, stopTracing, err := envTracing(ctx, "gateway", cfg.Grid.Local, logger)
	if err != nil {
		return err
	}
	defer stopTracing() // last: after the gateway and its node, to flush their spans
	// The node outlives ctx: at a signal the gateway still needs the grid
	// to finish the transactions in flight.
	node, addr, err := listenNode(ctx, cfg.Grid, tp, logger)
	if err != nil {
		return err
	}
	defer node.Close()
	disp := gateway.NewDispatcher(node.Manager, gateway.DispatcherOptions{HomeWait: cfg.HomeWait, Logger: logger})
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
		Logger: logger, TracerProvider: tp,
	})
	if err != nil {
		return err
	}
	var running atomic.Bool
	running.Store(true)
	opsSrv, err := startOps(&cfg.Ops, cfg.Grid, opsNode{
		manager: node.Manager,
		gateway: &gateway.Metrics{Gateway: gw, Dispatcher: disp},
		health: func() error {
			if !running.Load() || node.Manager.Context().Err() != nil {
				return errors.New("the gateway has stopped")
			}
			return nil
		},
		ready: func() error { return gatewayReady(ctx, gw, disp) },
	}, logger)
	if err != nil {
		return err
	}
	if opsSrv != nil {
		defer opsSrv.Close()
	}
	stop := context.AfterFunc(forceContext(ctx), func() {
		logger.Warn("gateway: second signal: closing at once; Prime redelivers what was in flight")
		gw.Abort()
	})
	defer stop()
	logger.Info("gateway: starting", "grid", cfg.Grid.Local, "listen", addr, "prime", cfg.ServerAddress, "journal", cfg.JournalPath)
	defer running.Store(false)
	return gw.Run(ctx)
}

// gatewayReady is a gateway's readiness: it is not shutting down, Prime's
// stream is up, and at least one worker is ready.
func gatewayReady(ctx context.Context, gw *gateway.Gateway, disp *gateway.Dispatcher) error {
	if ctx.Err() != nil {
		return errors.New("draining: shutting down")
	}
	if !gw.Stats().Connected {
		return errors.New("the stream to Prime is down")
	}
	ws := disp.Workers()
	for _, w := range ws {
		if w.Up && !w.Draining && w.Capacity > 0 {
			return nil
		}
	}
	return fmt.Errorf("no worker ready (%d known)", len(ws))
}
