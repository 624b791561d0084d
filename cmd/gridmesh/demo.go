package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
)

const (
	demoAPIKey   = "demo-key"
	demoChainID  = primesim.DefaultChainID
	demoContract = "demo-contract"
)

type demoFlags struct {
	n, workers, capacity     int
	rate                     float64
	exec, process, direct, v bool
	processes                int
	wait                     time.Duration
	tp                       trace.TracerProvider // from the OTEL_* environment; nil: off
}

// runDemo runs the whole pipeline in this process on loopback: a Prime
// simulator, a gateway and worker nodes, each grid node a Manager on its
// own listener, talking over real WebSockets. It pushes -n transactions
// through and exits 0 only if every one was answered exactly once.
func runDemo(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("demo", out)
	var f demoFlags
	fs.IntVar(&f.n, "n", 10000, "transactions to push through")
	fs.IntVar(&f.workers, "workers", 3, "worker nodes")
	fs.IntVar(&f.capacity, "capacity", 64, "transactions each worker runs at once")
	fs.Float64Var(&f.rate, "rate", 0, "transactions per second to generate (0: as fast as possible)")
	fs.BoolVar(&f.exec, "exec", false, "workers run the contract as a command per transaction (sh), not a Go function")
	fs.BoolVar(&f.process, "process", false, "workers run the contract as long-lived supervised processes (this binary's hidden contract-demo command) over the line protocol, not a Go function")
	fs.IntVar(&f.processes, "processes", 1, "with -process: contract processes per worker (the worker's capacity is spread over them)")
	fs.BoolVar(&f.direct, "direct", false, "also run the same load through a direct client (the Prime client calling the contract in process, no grid) and compare")
	fs.BoolVar(&f.v, "v", false, "show the gateway's and workers' logs")
	fs.DurationVar(&f.wait, "wait", 2*time.Minute, "give up if not every transaction is answered by then")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if f.n <= 0 || f.workers <= 0 || f.capacity <= 0 || f.processes <= 0 {
		return errors.New("-n, -workers, -capacity and -processes must be positive")
	}
	if f.exec && f.process {
		return errors.New("-exec and -process exclude each other")
	}
	tlevel := slog.LevelWarn
	if f.v {
		tlevel = slog.LevelInfo
	}
	tp, stopTracing, err := envTracing(ctx, "demo", "", slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: tlevel})))
	if err != nil {
		return err
	}
	defer stopTracing()
	if tp != nil {
		fmt.Fprintln(out, "tracing: on (OTLP, from the OTEL_* environment)")
	}
	f.tp = tp
	gridRes, err := demoRun(ctx, out, f, false)
	if err != nil {
		return err
	}
	if !f.direct {
		return nil
	}
	fmt.Fprintln(out)
	directRes, err := demoRun(ctx, out, f, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\ngrid (%d workers × %d) %.0f tx/s, direct (%d goroutines) %.0f tx/s: grid/direct = %.2f\n",
		f.workers, f.capacity, gridRes, f.workers*f.capacity, directRes, gridRes/directRes)
	return nil
}

// demoRun runs one pipeline and returns its throughput in tx/s.
func demoRun(ctx context.Context, out io.Writer, f demoFlags, direct bool) (float64, error) {
	logger := slog.New(slog.DiscardHandler)
	if f.v {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	prime, err := primesim.New(primesim.Config{APIKey: demoAPIKey, Contracts: []string{demoContract}, ChainID: demoChainID})
	if err != nil {
		return 0, err
	}
	if err := prime.Start("127.0.0.1:0"); err != nil {
		return 0, err
	}
	defer prime.Close()

	// The direct run has one contract for all; the grid one per worker.
	runners, procs, capacity := f.workers, f.processes, f.capacity
	if direct {
		runners, procs, capacity = 1, f.workers*f.processes, f.workers*f.capacity
	}
	contracts, mode, pools, err := demoContracts(f, runners, procs, capacity, logger)
	defer func() {
		for _, p := range pools {
			_ = p.Close()
		}
	}()
	if err != nil {
		return 0, err
	}
	var runner gateway.Runner
	var disp *gateway.Dispatcher
	if direct {
		runner = gateway.NewLocal(contracts[0], capacity)
		fmt.Fprintf(out, "direct: primesim %v → Prime client → contract (%s) in process, %d at a time\n", prime.Addr(), mode, capacity)
	} else {
		nodes, d, err := demoGrid(f, contracts, mode, logger)
		if err != nil {
			return 0, err
		}
		defer func() {
			_ = d.Close()
			for _, n := range nodes {
				_ = n.Close()
			}
		}()
		disp, runner = d, d
		fmt.Fprintf(out, "grid: primesim %v → gateway %s → %d workers (%s, capacity %d each) over WebSockets\n",
			prime.Addr(), nodes[0].Manager.Local(), f.workers, mode, f.capacity)
	}

	dir, err := os.MkdirTemp("", "gridmesh-demo-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	journal, err := gateway.OpenJournal(filepath.Join(dir, "journal.db"), gateway.JournalOptions{Logger: logger})
	if err != nil {
		return 0, err
	}
	defer journal.Close()
	gw, err := gateway.New(gateway.Options{
		Prime: gateway.PrimeConfig{
			ServerAddress: prime.Addr().String(), ChainID: demoChainID,
			SmartContractID: demoContract, APIKey: demoAPIKey,
			ReconnectDelay: 100 * time.Millisecond, MaxBackoff: 2 * time.Second,
		},
		Runner: runner, Journal: journal, Logger: logger, TracerProvider: f.tp,
	})
	if err != nil {
		return 0, err
	}
	if disp != nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := disp.WaitForWorkers(wctx, f.workers)
		cancel()
		if err != nil {
			return 0, err
		}
	}
	runCtx, stopGateway := context.WithCancel(context.WithoutCancel(ctx))
	defer stopGateway()
	runErr := make(chan error, 1)
	go func() { runErr <- gw.Run(runCtx) }()

	start := time.Now()
	genErr := make(chan error, 1)
	go func() { genErr <- prime.Generate(ctx, demoContract, f.n, f.rate) }()
	stopProgress := startProgress(out, f.n, func() int64 { return int64(gw.Stats().Sent) }, start)
	wctx, cancel := context.WithTimeout(ctx, f.wait)
	werr := prime.WaitAnswered(wctx, f.n)
	elapsed := time.Since(start)
	stopProgress()
	if werr == nil {
		// Settle, so that late duplicate answers are in the report; cut
		// short, the report is judged as it is.
		_, _ = prime.WaitReport(wctx, f.n)
	}
	cancel()
	if err := <-genErr; err != nil && werr == nil {
		werr = err
	}
	stopGateway()
	if err := <-runErr; err != nil && werr == nil {
		werr = err
	}

	rep := prime.Report()
	rate := float64(rep.Answered) / elapsed.Seconds()
	fmt.Fprintf(out, "%d transactions answered in %v: %.0f tx/s end to end\n", rep.Answered, elapsed.Round(time.Millisecond), rate)
	st := gw.Stats()
	fmt.Fprintf(out, "gateway: received %d, ran %d, from journal %d, duplicates dropped %d, sent %d, send errors %d, streams %d\n",
		st.Received, st.Started, st.FromJournal, st.Duplicates, st.Sent, st.SendErrors, st.Streams)
	if disp != nil {
		for _, w := range disp.Workers() {
			fmt.Fprintf(out, "  worker %s: %d transactions\n", w.Host, w.Done)
		}
	}
	for i, p := range pools {
		st := p.Stats()
		fmt.Fprintf(out, "  contract processes %d: %d running, %d started, %d ended, %d protocol errors\n", i, st.Running, st.Starts, st.Ended, st.ProtocolErrs)
	}
	fmt.Fprint(out, rep)
	if werr != nil {
		return rate, fmt.Errorf("not every transaction was answered: %w", werr)
	}
	if !rep.OK() {
		return rate, errors.New("not every transaction was answered exactly once")
	}
	return rate, nil
}

// demoGrid starts the gateway's node and the worker nodes, each on its own
// loopback listener, and the dispatcher on the gateway's node. The first
// node returned is the gateway's.
func demoGrid(f demoFlags, contracts []contract.Func, mode string, logger *slog.Logger) ([]*grid.Node, *gateway.Dispatcher, error) {
	lns := make([]net.Listener, f.workers+1)
	names := make([]string, len(lns))
	closeAll := func() {
		for _, ln := range lns {
			if ln != nil {
				ln.Close()
			}
		}
	}
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		lns[i], names[i] = ln, "http://"+ln.Addr().String()
	}
	secret := make([]byte, 32)
	copy(secret, fmt.Sprint(time.Now().UnixNano()))
	var nodes []*grid.Node
	fail := func(err error) ([]*grid.Node, *gateway.Dispatcher, error) {
		for _, n := range nodes {
			_ = n.Close()
		}
		for _, ln := range lns[len(nodes):] {
			ln.Close()
		}
		return nil, nil, err
	}
	for i, ln := range lns {
		opts := grid.Options{Local: names[i], Hosts: names, Secret: secret, Logger: logger}
		gridTracing(&opts, f.tp)
		var n *grid.Node
		var err error
		if i == 0 {
			n, err = grid.StartNode(context.Background(), ln, opts)
		} else {
			n, _, err = worker.Start(context.Background(), ln, opts, worker.Options{Contract: contracts[i-1], Capacity: f.capacity, Mode: mode, TracerProvider: f.tp})
		}
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
	}
	return nodes, gateway.NewDispatcher(nodes[0].Manager, gateway.DispatcherOptions{Logger: logger}), nil
}

// demoContracts returns the demo's contract for each of n runners (grid
// workers, or the direct client), each running capacity transactions at
// once: demoContractFunc itself, a command per transaction (-exec), or
// procs processes of the contract-demo command per runner (-process),
// returned so that the caller closes them.
func demoContracts(f demoFlags, n, procs, capacity int, logger *slog.Logger) ([]contract.Func, string, []*worker.ProcessPool, error) {
	contracts := make([]contract.Func, n)
	switch {
	case f.exec:
		c, err := worker.ExecContract(worker.ExecConfig{
			Command:       []string{"sh", "-c", `cat >/dev/null; printf '{"ok":true,"contract":"%s"}' "$SMART_CONTRACT_ID"`},
			OutputToChain: true,
		})
		for i := range contracts {
			contracts[i] = c
		}
		return contracts, worker.ModeExec, nil, err
	case f.process:
		command, env, err := demoProcessCommand()
		if err != nil {
			return nil, "", nil, err
		}
		var pools []*worker.ProcessPool
		for i := range contracts {
			p, err := worker.StartProcesses(worker.ProcessConfig{
				Command: command, Env: env, Processes: procs, InFlight: (capacity + procs - 1) / procs,
				RestartDelay: 50 * time.Millisecond, StopGrace: 2 * time.Second, Logger: logger,
			})
			if err != nil {
				return nil, "", pools, err
			}
			pools, contracts[i] = append(pools, p), p.Contract
		}
		return contracts, worker.ModeProcess, pools, nil
	}
	for i := range contracts {
		contracts[i] = demoContractFunc
	}
	return contracts, "func", nil, nil
}

// demoProcessCommand is the command line and extra environment of the
// demo's contract processes: this very binary, running its hidden
// contract-demo command. Re-running the binary needs nothing installed
// besides it (no toolchain, no interpreter, no file written), and its
// contract is demoContractFunc, the same Go code as the -process-less
// demo, served by contract.ServeProcess. Tests replace it, since their
// binary is the test binary.
var demoProcessCommand = func() (command, env []string, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find this program for -process: %w", err)
	}
	return []string{exe, "contract-demo"}, nil, nil
}

// demoContractFunc is the demo's contract: it hashes the transaction and
// returns its ID, sequence number and digest.
func demoContractFunc(_ context.Context, txJSON string, env, _ map[string]string) (contract.Output, error) {
	var tx struct {
		Header struct {
			TxnID string `json:"txn_id"`
		} `json:"header"`
		Payload struct {
			Seq int `json:"seq"`
		} `json:"payload"`
	}
	if err := json.Unmarshal([]byte(txJSON), &tx); err != nil {
		return contract.Output{}, fmt.Errorf("bad transaction: %w", err)
	}
	sum := sha256.Sum256([]byte(txJSON))
	res, err := json.Marshal(map[string]any{
		"txn_id": tx.Header.TxnID, "seq": tx.Payload.Seq,
		"sha256": hex.EncodeToString(sum[:]), "contract": env["SMART_CONTRACT_ID"],
	})
	return contract.Output{ResultJSON: string(res), OutputToChain: true}, err
}

// startProgress shows done()/total with the rate: a line redrawn every
// 100 ms on a terminal, otherwise a plain line every second. The returned
// function stops it after a last update.
func startProgress(out io.Writer, total int, done func() int64, start time.Time) (stop func()) {
	tty := isTerminal(out)
	every := time.Second
	if tty {
		every = 100 * time.Millisecond
	}
	var last int64
	lastAt := start
	draw := func(final bool) {
		d, now := done(), time.Now()
		rate := float64(d) / now.Sub(start).Seconds()
		cur := float64(d-last) / now.Sub(lastAt).Seconds()
		last, lastAt = d, now
		if tty {
			const width = 30
			filled := min(width, int(float64(width)*float64(d)/float64(total)))
			fmt.Fprintf(out, "\r[%-*s] %d/%d  %.0f tx/s (now %.0f) ", width, strings.Repeat("=", filled), d, total, rate, cur)
			if final {
				fmt.Fprintln(out)
			}
			return
		}
		fmt.Fprintf(out, "progress: %d/%d answered, %.0f tx/s (last second %.0f)\n", d, total, rate, cur)
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw(false)
			case <-quit:
				draw(true)
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
