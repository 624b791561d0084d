package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/config"
)

// runWorker runs a worker node from a YAML configuration until SIGINT or
// SIGTERM. Each transaction runs the configured command (mode exec) or
// goes to one of its long-lived supervised processes (mode process).
// At the signal it drains (drainWorker), then closes.
func runWorker(ctx context.Context, args []string, out io.Writer) error {
	var drain optionalDuration
	path, logger, err := parseConfigFlags("worker", args, out, func(fs *flag.FlagSet) {
		fs.Var(&drain, "drain-timeout", "at SIGINT/SIGTERM, the `duration` to let running transactions finish while refusing new ones\n"+
			"(0: close at once; default: the configuration's drain_timeout, itself 10s by default)")
	})
	if err != nil {
		return err
	}
	cfg, err := config.LoadWorker(path)
	if err != nil {
		return err
	}
	if drain.set {
		cfg.DrainTimeout = drain.d
	}
	// A contract that cannot run would fail every transaction: refuse to
	// start, naming the field.
	if err := worker.CheckCommand(cfg.Command, cfg.Dir); err != nil {
		return fmt.Errorf("%s: command: %w", path, err)
	}
	fn, pool, closeContract, err := workerContract(cfg, logger)
	if err != nil {
		return err
	}
	// Deferred first, so it runs after the node's Close: the gateway
	// re-dispatches the calls the node drops, then the processes stop.
	defer closeContract()
	tp, stopTracing, err := envTracing(ctx, "worker", cfg.Grid.Local, logger)
	if err != nil {
		return err
	}
	defer stopTracing() // last: after the node, to flush its spans
	addr, opts, err := nodeOptions(cfg.Grid, tp, logger)
	if err != nil {
		return err
	}
	// The handlers are registered before the node dials or accepts a
	// gateway, so its first probe finds them. The node outlives ctx.
	node, w, err := worker.Listen(context.WithoutCancel(ctx), addr, opts,
		worker.Options{Contract: fn, Capacity: cfg.Capacity, Mode: cfg.Mode, Logger: logger, TracerProvider: tp})
	if err != nil {
		return err
	}
	defer node.Close()
	// Runs still going after the drain are given up first (answered as
	// refused: the gateway runs them elsewhere), so that the node's Close
	// does not wait for them.
	defer w.Close()
	opsSrv, err := startOps(&cfg.Ops, cfg.Grid, opsNode{
		manager: node.Manager,
		worker:  &worker.Metrics{Worker: w, Processes: pool},
		health: func() error {
			if node.Manager.Context().Err() != nil {
				return errors.New("the worker's grid node has closed")
			}
			return nil
		},
		ready: w.Ready,
	}, logger)
	if err != nil {
		return err
	}
	if opsSrv != nil {
		// Up through the drain (the probes say it drains), closed first
		// after it.
		defer opsSrv.Close()
	}
	defer watchMembership(ctx, node.Manager, path, cfg.Grid, workerGrid, logger)()
	logger.Info("worker: ready", "grid", cfg.Grid.Local, "listen", addr, "capacity", cfg.Capacity, "mode", cfg.Mode, "command", cfg.Command)
	<-ctx.Done()
	drainWorker(ctx, w, cfg.DrainTimeout, logger)
	return nil
}

// drainWorker lets the transactions w runs finish before the node closes,
// for up to timeout or until a second signal, while w refuses new ones
// (the gateway runs those elsewhere). Whatever still runs when it returns
// fails on the gateway with grid.ErrDisconnected once the node closes,
// and the gateway sends it to another worker.
func drainWorker(ctx context.Context, w *worker.Worker, timeout time.Duration, logger *slog.Logger) {
	force := forceContext(ctx)
	logger.Info("worker: draining: new transactions refused", "running", w.Running(), "drain_timeout", timeout)
	dctx, cancel := context.WithTimeout(force, timeout)
	defer cancel()
	err := w.Drain(dctx)
	switch {
	case err == nil:
		logger.Info("worker: drained", "done", w.Done(), "refused", w.Refused())
	case force.Err() != nil:
		logger.Warn("worker: second signal: closing at once; the gateway re-dispatches what was running", "err", err)
	default:
		logger.Warn("worker: drain timeout: closing; the gateway re-dispatches what was running", "err", err)
	}
	logger.Info("worker: stopping")
}

// optionalDuration is a duration flag that knows whether it was given.
type optionalDuration struct {
	d   time.Duration
	set bool
}

func (o *optionalDuration) String() string {
	if o == nil || !o.set {
		return ""
	}
	return o.d.String()
}

func (o *optionalDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("negative duration %v", d)
	}
	o.d, o.set = d, true
	return nil
}

// workerContract returns the contract of cfg's mode, its process pool
// (mode process; else nil) and a function that stops it.
func workerContract(cfg *config.Worker, logger *slog.Logger) (contract.Func, *worker.ProcessPool, func(), error) {
	if cfg.Mode != worker.ModeProcess {
		c, err := worker.ExecContract(cfg.Exec())
		return c, nil, func() {}, err
	}
	pc := cfg.ProcessConfig()
	pc.Logger = logger
	pool, err := worker.StartProcesses(pc)
	if err != nil {
		return nil, nil, nil, err
	}
	return pool.Contract, pool, func() { _ = pool.Close() }, nil
}
