package main

import (
	"context"
	"io"

	"github.com/gridmesh/gridmesh/gateway"
)

// runWorker runs a worker node from a YAML configuration until SIGINT or
// SIGTERM. Each transaction runs the configured command.
func runWorker(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("worker", out)
	path := fs.String("config", "worker.yaml", "configuration file (YAML)")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := gateway.LoadWorkerConfig(*path)
	if err != nil {
		return err
	}
	contract, err := gateway.ExecContract(cfg.Exec())
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
	node, err := gateway.ListenNode(context.WithoutCancel(ctx), addr, opts)
	if err != nil {
		return err
	}
	defer node.Close()
	if _, err := gateway.NewWorker(node.Manager, gateway.WorkerOptions{Contract: contract, Capacity: cfg.Capacity, Mode: "exec"}); err != nil {
		return err
	}
	logger.Info("worker: ready", "grid", cfg.Grid.Local, "listen", addr, "capacity", cfg.Capacity, "command", cfg.Command)
	<-ctx.Done()
	// Closing the node fails the calls in flight with ErrDisconnected;
	// the gateway sends those transactions to another worker.
	logger.Info("worker: stopping")
	return nil
}
