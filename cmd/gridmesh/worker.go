package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/gridmesh/gridmesh/gateway"
)

// runWorker runs a worker node from a YAML configuration until SIGINT or
// SIGTERM. Each transaction runs the configured command (mode exec) or
// goes to one of its long-lived supervised processes (mode process).
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
	logger := newLogger(*verbose)
	contract, pool, closeContract, err := workerContract(cfg, logger)
	if err != nil {
		return err
	}
	// Deferred first, so it runs after the node's Close: the gateway
	// re-dispatches the calls the node drops, then the processes stop.
	defer closeContract()
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
	w, err := gateway.NewWorker(node.Manager, gateway.WorkerOptions{Contract: contract, Capacity: cfg.Capacity, Mode: cfg.Mode})
	if err != nil {
		return err
	}
	metrics := &gateway.Metrics{Worker: w, Processes: pool}
	node.Handle(gateway.MetricsPath, metrics.Handler())
	node.Handle(gateway.StatsPath, metrics.StatsHandler())
	logger.Info("worker: ready", "grid", cfg.Grid.Local, "listen", addr, "capacity", cfg.Capacity, "mode", cfg.Mode, "command", cfg.Command)
	<-ctx.Done()
	// Closing the node fails the calls in flight with ErrDisconnected;
	// the gateway sends those transactions to another worker.
	logger.Info("worker: stopping")
	return nil
}

// workerContract returns the contract of cfg's mode, its process pool
// (mode process; else nil) and a function that stops it.
func workerContract(cfg *gateway.WorkerConfig, logger *slog.Logger) (gateway.Contract, *gateway.ProcessPool, func(), error) {
	if cfg.Mode != gateway.ModeProcess {
		c, err := gateway.ExecContract(cfg.Exec())
		return c, nil, func() {}, err
	}
	pc := cfg.ProcessConfig()
	pc.Logger = logger
	pool, err := gateway.StartProcesses(pc)
	if err != nil {
		return nil, nil, nil, err
	}
	return pool.Contract, pool, func() { _ = pool.Close() }, nil
}
