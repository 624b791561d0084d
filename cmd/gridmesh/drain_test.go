package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
)

func init() {
	hiddenCommands = append(hiddenCommands, command{"contract-record", "the demo's contract as a process that records each run (tests only)", runContractRecord})
}

// runContractRecord is the demo's contract served as a process whose
// every transaction takes -delay and is recorded in a file of its own in
// -dir: a line "start ID" when it begins, "done ID" when it has finished.
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
	return gateway.ServeProcess(ctx, os.Stdin, out, func(ctx context.Context, txJSON string, env, secrets map[string]string) (gateway.Output, error) {
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
			return gateway.Output{}, ctx.Err()
		}
		record("done", tx.Header.TxnID)
		return demoContractFunc(ctx, txJSON, env, secrets)
	})
}

// runs reads what runContractRecord recorded in dir: per transaction ID,
// how many runs started and how many finished.
func runs(t *testing.T, dir string) (started, done map[string]int) {
	t.Helper()
	started, done = make(map[string]int), make(map[string]int)
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
			switch {
			case !ok: // a line being written
			case what == "start":
				started[id]++
			case what == "done":
				done[id]++
			}
		}
		f.Close()
	}
	return started, done
}

// drainSetup writes the configurations of a gateway and of workers
// 1..workers running contract-record with delay, each recording in
// dir/w<i>, on a grid of fresh loopback addresses. It returns the
// configuration files (gateway first) and the gateway's address.
func drainSetup(t *testing.T, primeAddr string, workers int, delay time.Duration) (dir string, cfgs []string, gwAddr string) {
	t.Helper()
	dir = t.TempDir()
	names := []string{"http://" + freeAddr(t)}
	for range workers {
		names = append(names, "http://"+freeAddr(t))
	}
	gridYAML := fmt.Sprintf("grid:\n  hosts: [%s]\n  secret: s\n", strings.Join(names, ", "))
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfgs = append(cfgs, write("gateway.yaml", fmt.Sprintf("server_address: %s\nchain_id: c\nsmart_contract_id: sc\napi_key: k\njournal_path: %s\n"+
		"drain_timeout: 2s\ntransaction_timeout: 50s\n%s  local: %s\n", primeAddr, filepath.Join(dir, "j.db"), gridYAML, names[0])))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= workers; i++ {
		rec := filepath.Join(dir, fmt.Sprintf("w%d", i))
		if err := os.Mkdir(rec, 0o700); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, write(fmt.Sprintf("worker%d.yaml", i), fmt.Sprintf("mode: process\ncommand: [%q, %q]\nprocess:\n  processes: 1\n  in_flight: 4\n  stop_grace: 1s\n"+
			"  env: [%q, %q]\n%s  local: %s\n", exe, "-test.run=^TestMainProcess$",
			fmt.Sprintf("GRIDMESH_TEST_ARGS=contract-record -delay %v -dir %s", delay, rec), "GORACE=atexit_sleep_ms=0", gridYAML, names[i])))
	}
	return dir, cfgs, strings.TrimPrefix(names[0], "http://")
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
	if testing.Short() {
		t.Skip("starts processes")
	}
	const n = 60
	prime := startPrime(t)
	defer prime.Close()
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	dir, cfgs, gwAddr := drainSetup(t, prime.Addr().String(), 2, 300*time.Millisecond)
	w1 := startChild(t, ctx, "worker", "-drain-timeout", "40s", "-config", cfgs[1])
	w2 := startChild(t, ctx, "worker", "-config", cfgs[2])
	gw := startChild(t, ctx, "gateway", "-config", cfgs[0])
	if err := prime.Generate(ctx, "sc", n, 0); err != nil {
		t.Fatal(err)
	}

	running := waitRunning(t, ctx, filepath.Join(dir, "w1"), w1)
	if err := w1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w1.wait(t); err != nil {
		t.Fatalf("worker exit after SIGTERM: %v\n%s", err, w1.stderr.String())
	}
	for _, want := range []string{"worker: draining", "worker: drained", "worker: stopping"} {
		if !strings.Contains(w1.stderr.String(), want) {
			t.Errorf("worker log lacks %q:\n%s", want, w1.stderr.String())
		}
	}
	if err := prime.WaitAnswered(ctx, n); err != nil {
		t.Fatalf("%v\n%v\ngateway:\n%s", err, prime.Report(), gw.stderr.String())
	}
	st, err := scrapeStats(ctx, gwAddr)
	if err != nil {
		t.Fatal(err)
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
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := c.wait(t); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, c.stderr.String())
		}
	}
	if r := prime.Report(); !r.OK() || r.Submitted != n || r.ErrorResponses != 0 {
		t.Fatalf("report:\n%v", r)
	}
}

// TestProcessWorkerSecondSignal: a worker draining a transaction that
// would take an hour closes at once at a second SIGTERM, and exits 0.
func TestProcessWorkerSecondSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	prime := startPrime(t)
	defer prime.Close()
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	dir, cfgs, _ := drainSetup(t, prime.Addr().String(), 1, time.Hour)
	w := startChild(t, ctx, "worker", "-drain-timeout", "1h", "-config", cfgs[1])
	gw := startChild(t, ctx, "gateway", "-config", cfgs[0])
	if err := prime.Generate(ctx, "sc", 1, 0); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, ctx, filepath.Join(dir, "w1"), w)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(w.stderr.String(), "worker: draining") {
		if ctx.Err() != nil {
			t.Fatalf("worker did not start draining:\n%s", w.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w.wait(t); err != nil {
		t.Fatalf("worker exit after a second SIGTERM: %v\n%s", err, w.stderr.String())
	}
	if !strings.Contains(w.stderr.String(), "second signal") {
		t.Errorf("worker log lacks the second signal:\n%s", w.stderr.String())
	}
	if _, done := runs(t, filepath.Join(dir, "w1")); len(done) != 0 {
		t.Errorf("a transaction finished: %v", done)
	}
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := gw.wait(t); err != nil {
		t.Fatalf("gateway exit after SIGTERM: %v\n%s", err, gw.stderr.String())
	}
}
