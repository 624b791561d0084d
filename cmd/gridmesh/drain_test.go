package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
)

func init() {
	hiddenCommands = append(hiddenCommands, command{"contract-record", "the demo's contract as a process that records each run (tests only)", runContractRecord})
}

// runContractRecord is the demo's contract served as a process whose
// every transaction takes -delay and is recorded in a file of its own in
// -dir: a line "start ID" when it begins, "done ID" when it has finished,
// "cancel ID" when the worker cancelled it (contract.ErrCancelled)
// and "stop ID" when its context ended otherwise.
func runContractRecord(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("contract-record", out)
	delay := fs.Duration("delay", 50*time.Millisecond, "time each transaction takes")
	dir := fs.String("dir", "", "directory to record runs in")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(*dir, fmt.Sprintf("%d.log", os.Getpid())), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	var mu sync.Mutex
	record := func(what, id string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(f, "%s %s\n", what, id)
	}
	return contract.ServeProcess(ctx, os.Stdin, out, func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
		var tx struct {
			Header struct {
				TxnID string `json:"txn_id"`
			} `json:"header"`
		}
		_ = json.Unmarshal([]byte(txJSON), &tx)
		record("start", tx.Header.TxnID)
		t := time.NewTimer(*delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), contract.ErrCancelled) {
				record("cancel", tx.Header.TxnID)
			} else {
				record("stop", tx.Header.TxnID)
			}
			return contract.Output{}, context.Cause(ctx)
		}
		record("done", tx.Header.TxnID)
		return demoContractFunc(ctx, txJSON, env, secrets)
	})
}

// runs reads what runContractRecord recorded in dir: per transaction ID,
// how many runs started and how many finished.
func runs(t *testing.T, dir string) (started, done map[string]int) {
	t.Helper()
	r := records(t, dir)
	return r["start"], r["done"]
}

// records reads what runContractRecord recorded in dir: per kind of
// record ("start", "done", "cancel", "stop"), per transaction ID, how
// many.
func records(t *testing.T, dir string) map[string]map[string]int {
	t.Helper()
	recs := map[string]map[string]int{"start": {}, "done": {}, "cancel": {}, "stop": {}}
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			what, id, ok := strings.Cut(sc.Text(), " ")
			if ok && recs[what] != nil { // else a line being written
				recs[what][id]++
			}
		}
		f.Close()
	}
	return recs
}

// drainSetup writes the configurations of a gateway (drain_timeout 2s,
// transaction_timeout 50s, and the "key: value" lines of gwYAML, which
// override those) and of workers
// 1..workers running contract-record with delay, each recording in
// dir/w<i>, on a grid of fresh loopback addresses. It returns the
// configuration files (gateway first) and the gateway's address.
func drainSetup(t *testing.T, primeAddr string, workers int, delay time.Duration, gwYAML ...string) (dir string, cfgs []string, gwAddr string) {
	t.Helper()
	c := newTestCluster(t, workers)
	gw := map[string]string{"drain_timeout": "2s", "transaction_timeout": "50s"}
	for _, kv := range gwYAML {
		k, v, _ := strings.Cut(kv, ": ")
		gw[k] = v
	}
	var yaml strings.Builder
	for _, k := range slices.Sorted(maps.Keys(gw)) {
		fmt.Fprintf(&yaml, "%s: %s\n", k, gw[k])
	}
	cfgs = append(cfgs, c.gatewayConfig(primeAddr, yaml.String()))
	for i := 1; i <= workers; i++ {
		rec := filepath.Join(c.dir, fmt.Sprintf("w%d", i))
		if err := os.Mkdir(rec, 0o700); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, c.workerConfig(i, processWorker(t, 1, 4, "1s", fmt.Sprintf("contract-record -delay %v -dir %s", delay, rec))))
	}
	return c.dir, cfgs, c.gatewayAddr()
}

// secondSignal sends p (the command named what) SIGTERM, waits until its
// log shows the graceful shutdown begun (started), sends a second SIGTERM
// and checks that p exits cleanly and logs the second signal.
func secondSignal(t *testing.T, ctx context.Context, p *child, what, started string) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.stderr.String(), started) {
		if ctx.Err() != nil {
			t.Fatalf("%s did not log %q:\n%s", what, started, p.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("%s exit after a second SIGTERM: %v\n%s", what, err, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "second signal") {
		t.Errorf("%s log lacks the second signal:\n%s", what, p.stderr.String())
	}
}

// waitRunning waits until a run has started and not finished in dir, and
// returns the IDs of those running.
func waitRunning(t *testing.T, ctx context.Context, dir string, c *child) []string {
	t.Helper()
	for {
		started, done := runs(t, dir)
		var running []string
		for id := range started {
			if done[id] < started[id] {
				running = append(running, id)
			}
		}
		if len(running) > 0 {
			return running
		}
		if ctx.Err() != nil {
			t.Fatalf("no transaction running in %s:\n%s", dir, c.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestProcessWorkerDrain runs a gateway and two workers as processes and
// sends one worker SIGTERM while it runs transactions: it refuses new
// ones, finishes those it runs, and exits 0. Every transaction runs
// exactly once over both workers (none is re-dispatched), none counts as
// failed, and Prime has every answer exactly once.
func TestProcessWorkerDrain(t *testing.T) {
	const n = 60
	prime, ctx := processTest(t)
	dir, cfgs, gwAddr := drainSetup(t, prime.Addr().String(), 2, 300*time.Millisecond)
	w1 := startChild(t, ctx, "worker", "-drain-timeout", "40s", "-config", cfgs[1])
	w2 := startChild(t, ctx, "worker", "-config", cfgs[2])
	gw := startChild(t, ctx, "gateway", "-config", cfgs[0])
	if err := prime.Generate(ctx, "sc", n, 0); err != nil {
		t.Fatal(err)
	}

	running := waitRunning(t, ctx, filepath.Join(dir, "w1"), w1)
	w1.term(t, "worker")
	for _, want := range []string{"worker: draining", "worker: drained", "worker: stopping"} {
		if !strings.Contains(w1.stderr.String(), want) {
			t.Errorf("worker log lacks %q:\n%s", want, w1.stderr.String())
		}
	}
	if err := prime.WaitAnswered(ctx, n); err != nil {
		t.Fatalf("%v\n%v\ngateway:\n%s", err, prime.Report(), gw.stderr.String())
	}
	// Prime may have the last answer before the gateway has counted it.
	var st gateway.NodeStats
	for {
		var err error
		if st, err = scrapeStats(ctx, gwAddr); err != nil {
			t.Fatal(err)
		}
		if st.Gateway.Sent >= n || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if st.Gateway.Failed != 0 || st.Gateway.Sent != n {
		t.Errorf("gateway: %d failed, %d sent; want 0 and %d", st.Gateway.Failed, st.Gateway.Sent, n)
	}

	started1, done1 := runs(t, filepath.Join(dir, "w1"))
	started2, done2 := runs(t, filepath.Join(dir, "w2"))
	for _, id := range running {
		if started1[id] != 1 || done1[id] != 1 || started2[id] != 0 {
			t.Errorf("transaction %s, running on worker 1 at SIGTERM: started %d and finished %d times there, started %d times on worker 2",
				id, started1[id], done1[id], started2[id])
		}
	}
	total := 0
	for id, k := range started1 {
		if k != 1 || done1[id] != 1 || started2[id] != 0 {
			t.Errorf("transaction %s: started %d and finished %d times on worker 1, started %d times on worker 2", id, k, done1[id], started2[id])
		}
		total++
	}
	for id, k := range started2 {
		if k != 1 || done2[id] != 1 {
			t.Errorf("transaction %s: started %d and finished %d times on worker 2", id, k, done2[id])
		}
		total++
	}
	if total != n {
		t.Errorf("%d transactions ran, want %d", total, n)
	}
	t.Logf("worker 1 ran %d (%d of them running at SIGTERM), worker 2 ran %d; gateway re-dispatched %d",
		len(started1), len(running), len(started2), st.Dispatch.Redispatched)

	for _, c := range []*child{gw, w2} {
		c.term(t, "process")
	}
	if r := prime.Report(); !r.OK() || r.Submitted != n || r.ErrorResponses != 0 {
		t.Fatalf("report:\n%v", r)
	}
}

// TestProcessWorkerSecondSignal: a worker draining a transaction that
// would take an hour closes at once at a second SIGTERM, and exits 0.
func TestProcessWorkerSecondSignal(t *testing.T) {
	prime, ctx := processTest(t)
	dir, cfgs, _ := drainSetup(t, prime.Addr().String(), 1, time.Hour)
	w := startChild(t, ctx, "worker", "-drain-timeout", "1h", "-config", cfgs[1])
	gw := startChild(t, ctx, "gateway", "-config", cfgs[0])
	if err := prime.Generate(ctx, "sc", 1, 0); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, ctx, filepath.Join(dir, "w1"), w)
	secondSignal(t, ctx, w, "worker", "worker: draining")
	if _, done := runs(t, filepath.Join(dir, "w1")); len(done) != 0 {
		t.Errorf("a transaction finished: %v", done)
	}
	gw.term(t, "gateway")
}

// waitRecord waits until dir has a record of kind what for some
// transaction, and returns its ID.
func waitRecord(t *testing.T, ctx context.Context, dir, what string, c *child) string {
	t.Helper()
	for {
		for id := range records(t, dir)[what] {
			return id
		}
		if ctx.Err() != nil {
			t.Fatalf("no %q record in %s:\n%s", what, dir, c.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestGatewaySecondSignal: a gateway draining a transaction that would
// take an hour, with an hour's drain_timeout, closes at once at a second
// SIGTERM and exits 0; the transaction is cancelled on the worker, down
// to its contract process, and not answered (Prime delivers it again).
func TestGatewaySecondSignal(t *testing.T) {
	prime, ctx := processTest(t)
	dir, cfgs, _ := drainSetup(t, prime.Addr().String(), 1, time.Hour, "drain_timeout: 1h", "transaction_timeout: 2h")
	w := startChild(t, ctx, "worker", "-config", cfgs[1])
	gw := startChild(t, ctx, "gateway", "-config", cfgs[0])
	if err := prime.Generate(ctx, "sc", 1, 0); err != nil {
		t.Fatal(err)
	}
	running := waitRunning(t, ctx, filepath.Join(dir, "w1"), w)
	secondSignal(t, ctx, gw, "gateway", "gateway: shutting down")
	if id := waitRecord(t, ctx, filepath.Join(dir, "w1"), "cancel", w); id != running[0] {
		t.Errorf("cancelled %s, want %s", id, running[0])
	}
	if r := prime.Report(); r.Answered != 0 {
		t.Errorf("Prime has answers:\n%v", r)
	}
	w.term(t, "worker")
}

// TestProcessWorkerCancel: a transaction past the gateway's
// transaction_timeout is cancelled on its worker down to its contract
// process, which sees contract.ErrCancelled, and Prime is answered
// with the timeout.
func TestProcessWorkerCancel(t *testing.T) {
	prime, ctx := processTest(t)
	dir, cfgs, _ := drainSetup(t, prime.Addr().String(), 1, time.Hour, "transaction_timeout: 1s")
	w := startChild(t, ctx, "worker", "-config", cfgs[1])
	gw := startChild(t, ctx, "gateway", "-config", cfgs[0])
	if err := prime.Generate(ctx, "sc", 1, 0); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, ctx, filepath.Join(dir, "w1"), "cancel", w)
	if err := prime.WaitAnswered(ctx, 1); err != nil {
		t.Fatalf("%v\n%v\ngateway:\n%s", err, prime.Report(), gw.stderr.String())
	}
	if r := prime.Report(); r.ErrorResponses != 1 {
		t.Errorf("want the timeout answered as an error:\n%v", r)
	}
	for _, c := range []*child{gw, w} {
		c.term(t, "process")
	}
	if recs := records(t, filepath.Join(dir, "w1")); len(recs["done"]) != 0 || len(recs["stop"]) != 0 {
		t.Errorf("records %v", recs)
	}
}
