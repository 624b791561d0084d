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
	path, logger, err := parseConfigFlags("worker", args, out)
	if err != nil {
		return err
	}
	cfg, err := gateway.LoadWorkerConfig(path)
	if err != nil {
		return err
	}
	contract, pool, closeContract, err := workerContract(cfg, logger)
	if err != nil {
		return err
	}
	// Deferred first, so it runs after the node's Close: the gateway
	// re-dispatches the calls the node drops, then the processes stop.
	defer closeContract()
	node, addr, err := listenNode(ctx, cfg.Grid, logger)
	if err != nil {
		return err
	}
	defer node.Close()
	w, err := gateway.NewWorker(node.Manager, gateway.WorkerOptions{Contract: contract, Capacity: cfg.Capacity, Mode: cfg.Mode})
	if err != nil {
		return err
	}
	serveMetrics(node, &gateway.Metrics{Worker: w, Processes: pool})
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
