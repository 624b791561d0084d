package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// childEnv names the contract a re-executed test binary plays.
const childEnv = "GATEWAY_TEST_PROCESS_CHILD"

// TestProcessChild is not a test: the process tests run the test binary
// again with childEnv set, and then it is a contract process. Re-running
// the test binary needs no toolchain or file outside the test, and the
// child can use gateway.ServeProcess like any Go contract.
func TestProcessChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("runs only as a child of the process tests")
	}
	switch mode {
	case "serve":
		if err := gateway.ServeProcess(context.Background(), os.Stdin, os.Stdout, childContract); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
	case "close-stdout":
		os.Stdout.Close()
		time.Sleep(time.Hour)
	case "exit":
		fmt.Fprintln(os.Stderr, "dying at once")
		os.Exit(3)
	case "stop-reading":
		// Answers its first two transactions, then stops reading stdin
		// and answering, alive: a wedged contract.
		sc := bufio.NewScanner(os.Stdin)
		for i := 0; i < 2 && sc.Scan(); i++ {
			var req struct {
				ID uint64 `json:"id"`
			}
			_ = json.Unmarshal(sc.Bytes(), &req)
			fmt.Printf(`{"id":%d,"result_json":"{\"pid\":%d}"}`+"\n", req.ID, os.Getpid())
		}
		time.Sleep(time.Hour)
	case "old":
		serveOld()
	case "ignore-eof":
		sleep := exec.Command("sleep", "60") // a grandchild in the same process group
		if err := sleep.Start(); err != nil {
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "mypid %d grandchild %d\n", os.Getpid(), sleep.Process.Pid)
		_, _ = io.Copy(io.Discard, os.Stdin)
		time.Sleep(time.Hour)
	}
	os.Exit(0)
}

// serveOld plays a contract written before cancel lines, strict as the
// Python example in PROCESS.md is: it takes every line for a request and
// exits on one that is not, and it never says hello.
func serveOld() {
	sc := bufio.NewScanner(os.Stdin)
	var mu sync.Mutex
	for sc.Scan() {
		var req struct {
			ID              uint64  `json:"id"`
			TransactionJSON *string `json:"transaction_json"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil || req.TransactionJSON == nil {
			fmt.Fprintf(os.Stderr, "old child: not a request: %s\n", sc.Bytes())
			os.Exit(2)
		}
		go func() {
			out, err := childContract(context.Background(), *req.TransactionJSON, nil, nil)
			a := map[string]any{"id": req.ID, "result_json": out.ResultJSON}
			if err != nil {
				a["error"] = err.Error()
			}
			line, _ := json.Marshal(a)
			mu.Lock()
			defer mu.Unlock()
			_, _ = os.Stdout.Write(append(line, '\n'))
		}()
	}
}

var (
	childMu   sync.Mutex
	childDone = map[int]chan struct{}{}
)

// childMarkDone closes seq's channel, once.
func childMarkDone(seq int) {
	ch := childDoneCh(seq)
	childMu.Lock()
	defer childMu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// childDoneCh returns the channel closed when transaction seq finished.
func childDoneCh(seq int) chan struct{} {
	childMu.Lock()
	defer childMu.Unlock()
	if childDone[seq] == nil {
		childDone[seq] = make(chan struct{})
	}
	return childDone[seq]
}

// childContract is the test contract, told what to do by its transaction.
func childContract(ctx context.Context, txJSON string, env, secrets map[string]string) (gateway.Output, error) {
	var tx struct {
		Seq     int             `json:"seq"`
		SleepMS int             `json:"sleep_ms"`
		After   *int            `json:"after"`   // wait for that seq to finish, then 500 ms
		Hold    bool            `json:"hold"`    // never answer
		Wait    bool            `json:"wait"`    // answer once ctx ends, with its cause
		Garbage string          `json:"garbage"` // write this line to stdout, then hang
		Huge    int             `json:"huge"`    // write a line this long, then hang
		Fail    string          `json:"fail"`    // answer with this error
		Payload json.RawMessage `json:"payload"` // a primesim transaction's
	}
	if err := json.Unmarshal([]byte(txJSON), &tx); err != nil {
		return gateway.Output{}, err
	}
	if tx.Payload != nil {
		var p struct {
			Seq int `json:"seq"`
		}
		_ = json.Unmarshal(tx.Payload, &p)
		tx.Seq = p.Seq
	}
	switch {
	case tx.Hold || os.Getenv("CHILD_HOLD_SEQ") == strconv.Itoa(tx.Seq):
		fmt.Fprintf(os.Stderr, "holding %d pid %d\n", tx.Seq, os.Getpid())
		time.Sleep(time.Hour)
	case tx.Garbage != "":
		_, _ = os.Stdout.WriteString(tx.Garbage + "\n")
		time.Sleep(time.Hour)
	case tx.Huge > 0:
		_, _ = os.Stdout.WriteString(strings.Repeat("x", tx.Huge) + "\n")
		time.Sleep(time.Hour)
	case tx.Fail != "":
		return gateway.Output{Logs: "failing on purpose"}, errors.New(tx.Fail)
	case tx.Wait:
		fmt.Fprintf(os.Stderr, "waiting %d pid %d\n", tx.Seq, os.Getpid())
		<-ctx.Done()
		fmt.Fprintf(os.Stderr, "cancelled %d: %v\n", tx.Seq, context.Cause(ctx))
		return gateway.Output{}, context.Cause(ctx)
	case tx.After != nil:
		<-childDoneCh(*tx.After)
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Duration(tx.SleepMS) * time.Millisecond)
	defer childMarkDone(tx.Seq)
	return gateway.Output{
		ResultJSON: fmt.Sprintf(`{"seq":%d,"pid":%d,"stage":%q,"secret":%q}`,
			tx.Seq, os.Getpid(), env["STAGE"], secrets["secret-key"]),
		OutputToChain: true,
		Logs:          fmt.Sprintf("seq %d", tx.Seq),
	}, nil
}

// childResult is what childContract answers.
type childResult struct {
	Seq    int    `json:"seq"`
	Pid    int    `json:"pid"`
	Stage  string `json:"stage"`
	Secret string `json:"secret"`
}

func parseResult(tb testing.TB, out gateway.Output) childResult {
	tb.Helper()
	var r childResult
	if err := json.Unmarshal([]byte(out.ResultJSON), &r); err != nil {
		tb.Fatalf("result %q: %v", out.ResultJSON, err)
	}
	return r
}

// startPool starts processes of the test binary playing mode.
func startPool(tb testing.TB, mode string, cfg gateway.ProcessConfig) *gateway.ProcessPool {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Command = []string{exe, "-test.run=^TestProcessChild$"}
	// A race-enabled binary sleeps 1 s at exit unless told not to.
	cfg.Env = append(cfg.Env, childEnv+"="+mode, "GORACE=atexit_sleep_ms=0")
	p, err := gateway.StartProcesses(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// runTx runs one transaction on p, failing the test on an error.
func runTx(tb testing.TB, p *gateway.ProcessPool, txJSON string) childResult {
	tb.Helper()
	out, err := p.Contract(testCtx(tb), txJSON, nil, nil)
	if err != nil {
		tb.Fatalf("transaction %s: %v", txJSON, err)
	}
	return parseResult(tb, out)
}

// TestProcessRoundTrip runs many transactions at once through two
// processes; each answer matches its transaction.
func TestProcessRoundTrip(t *testing.T) {
	p := startPool(t, "serve", gateway.ProcessConfig{Processes: 2, InFlight: 8})
	if p.Capacity() != 16 {
		t.Fatalf("capacity %d", p.Capacity())
	}
	const n = 300
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		pids = map[int]int{}
	)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := p.Contract(testCtx(t), fmt.Sprintf(`{"seq":%d,"sleep_ms":%d}`, i, i%4),
				map[string]string{"STAGE": "test"}, map[string]string{"secret-key": "s3"})
			if err != nil {
				errs <- err
				return
			}
			var r childResult
			if err := json.Unmarshal([]byte(out.ResultJSON), &r); err != nil || r.Seq != i || r.Stage != "test" || r.Secret != "s3" ||
				out.Logs != fmt.Sprintf("seq %d", i) || !out.OutputToChain {
				errs <- fmt.Errorf("transaction %d: output %+v (%v)", i, out, err)
				return
			}
			mu.Lock()
			pids[r.Pid]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := p.Stats()
	if len(pids) != 2 || st.Starts != 2 || st.Running != 2 || st.InFlight != 0 || st.Ended != 0 {
		t.Fatalf("pids %v, stats %+v", pids, st)
	}
}

// TestProcessOutOfOrder: the first transaction sent can only finish after
// the second, so one process must hold both and answer out of order.
func TestProcessOutOfOrder(t *testing.T) {
	p := startPool(t, "serve", gateway.ProcessConfig{InFlight: 2})
	order := make(chan int, 2)
	first := make(chan error, 1)
	go func() {
		_, err := p.Contract(testCtx(t), `{"seq":1,"after":2}`, nil, nil)
		order <- 1
		first <- err
	}()
	waitUntil(t, "the first transaction to be sent", func() bool { return p.Stats().InFlight == 1 })
	runTx(t, p, `{"seq":2}`)
	order <- 2
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if a, b := <-order, <-order; a != 2 || b != 1 {
		t.Fatalf("finished in order %d, %d; want 2, 1", a, b)
	}
}

// TestProcessContractError: the contract's error and logs reach the
// caller like a command's; the process stays up.
func TestProcessContractError(t *testing.T) {
	p := startPool(t, "serve", gateway.ProcessConfig{})
	out, err := p.Contract(testCtx(t), `{"seq":1,"fail":"no such account"}`, nil, nil)
	if err == nil || err.Error() != "no such account" || out.Logs != "failing on purpose" {
		t.Fatalf("err %v, out %+v", err, out)
	}
	runTx(t, p, `{"seq":2}`)
	if st := p.Stats(); st.Starts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestProcessKill9: the process is killed with kill -9 while it holds
// transactions; they all fail at once with ErrProcessExited, the process
// is started again and takes the next transaction.
func TestProcessKill9(t *testing.T) {
	logs := new(logBuffer)
	p := startPool(t, "serve", gateway.ProcessConfig{InFlight: 4, RestartDelay: 20 * time.Millisecond, StopGrace: 100 * time.Millisecond, Logger: logs.logger()})
	pid := runTx(t, p, `{"seq":0}`).Pid
	errs := make(chan error, 4)
	for i := 1; i <= 4; i++ {
		go func() {
			_, err := p.Contract(testCtx(t), fmt.Sprintf(`{"seq":%d,"hold":true}`, i), nil, nil)
			errs <- err
		}()
	}
	waitUntil(t, "four held transactions", func() bool { return strings.Count(logs.String(), "holding") == 4 })
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		var err error
		select {
		case err = <-errs:
		case <-time.After(testTimeout):
			t.Fatal("held transactions not failed")
		}
		if !errors.Is(err, gateway.ErrProcessExited) || !strings.Contains(err.Error(), "signal: killed") ||
			!strings.Contains(err.Error(), fmt.Sprintf("pid %d", pid)) {
			t.Fatalf("err %v", err)
		}
	}
	if d := time.Since(killed); d > 5*time.Second {
		t.Fatalf("in-flight transactions failed %v after the kill", d)
	}
	if again := runTx(t, p, `{"seq":5}`).Pid; again == pid {
		t.Fatal("same pid after the kill")
	}
	if st := p.Stats(); st.Starts != 2 || st.Ended != 1 {
		t.Fatalf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "restarting with backoff"); n != 1 {
		t.Fatalf("%d restart warnings:\n%s", n, logs)
	}
}

// TestProcessProtocolErrors: a line that is not an answer, an answer to
// an id never sent, and a line over the bound each kill the process with
// ErrProcessProtocol; the next process answers.
func TestProcessProtocolErrors(t *testing.T) {
	cases := []struct{ name, tx, want string }{
		{"garbage", `{"seq":1,"garbage":"this is not json"}`, "not an answer object"},
		{"unknown id", `{"seq":1,"garbage":"{\"id\":99}"}`, "never sent"},
		{"oversized", `{"seq":1,"huge":200000}`, "longer than 65536 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startPool(t, "serve", gateway.ProcessConfig{MaxLineBytes: 64 << 10, RestartDelay: 10 * time.Millisecond})
			pid := runTx(t, p, `{"seq":0}`).Pid
			_, err := p.Contract(testCtx(t), tc.tx, nil, nil)
			if !errors.Is(err, gateway.ErrProcessProtocol) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrProcessProtocol with %q", err, tc.want)
			}
			if again := runTx(t, p, `{"seq":2}`).Pid; again == pid {
				t.Fatal("same pid after a protocol error")
			}
			if st := p.Stats(); st.ProtocolErrs != 1 || st.Starts != 2 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestProcessClosesStdout: a process that closes its stdout but keeps
// running is killed.
func TestProcessClosesStdout(t *testing.T) {
	p := startPool(t, "close-stdout", gateway.ProcessConfig{RestartDelay: time.Hour})
	_, err := p.Contract(testCtx(t), `{"seq":1}`, nil, nil)
	if !errors.Is(err, gateway.ErrProcessProtocol) || !strings.Contains(err.Error(), "closed its stdout but kept running") {
		t.Fatalf("err %v", err)
	}
}

// TestProcessCrashLoop: a process that exits at once is restarted with a
// growing backoff, so the restarts over a window are few, and logged
// once; a transaction meanwhile fails with a clear error.
func TestProcessCrashLoop(t *testing.T) {
	logs := new(logBuffer)
	p := startPool(t, "exit", gateway.ProcessConfig{RestartDelay: 20 * time.Millisecond, MaxRestartDelay: 10 * time.Second, Logger: logs.logger()})
	const window = 1500 * time.Millisecond
	time.Sleep(window)
	// Without backoff a start every ~20 ms plus the process's life would
	// be 20 or more; with it, 20+40+80+160+320+640 ms fill the window.
	st := p.Stats()
	if st.Starts < 2 || st.Starts > 10 {
		t.Fatalf("%d starts in %v; stats %+v", st.Starts, window, st)
	}
	t.Logf("%d starts in %v", st.Starts, window)
	// The transaction waits for a process, or is sent to one that exits
	// before answering, or (on a slow machine) to one still starting.
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	_, err := p.Contract(ctx, `{"seq":1}`, nil, nil)
	switch {
	case errors.Is(err, gateway.ErrProcessDown) || errors.Is(err, gateway.ErrProcessExited):
		if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "dying at once") {
			t.Fatalf("err %v", err)
		}
	case !errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("err %v", err)
	}
	if n := strings.Count(logs.String(), "restarting with backoff"); n != 1 {
		t.Fatalf("%d restart warnings:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "dying at once") {
		t.Fatalf("stderr not logged:\n%s", logs)
	}
}

// TestProcessStartFails: a restart that cannot start the program is
// retried with backoff too, and logged.
func TestProcessStartFails(t *testing.T) {
	script := t.TempDir() + "/contract"
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 3\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	logs := new(logBuffer)
	p, err := gateway.StartProcesses(gateway.ProcessConfig{Command: []string{script}, RestartDelay: 20 * time.Millisecond, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a failed start", func() bool { return strings.Contains(logs.String(), "start contract process") })
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	if _, err := p.Contract(ctx, "{}", nil, nil); !errors.Is(err, gateway.ErrProcessDown) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err %v", err)
	}
}

// TestProcessTimeout: a transaction past its deadline answers its caller
// with an error; the process keeps running, and its late answer is
// dropped.
func TestProcessTimeout(t *testing.T) {
	p := startPool(t, "serve", gateway.ProcessConfig{InFlight: 2, Timeout: 300 * time.Millisecond, StopGrace: 100 * time.Millisecond})
	pid := runTx(t, p, `{"seq":0}`).Pid
	_, err := p.Contract(testCtx(t), `{"seq":1,"hold":true}`, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("err %v", err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 150*time.Millisecond)
	defer cancel()
	if _, err := p.Contract(ctx, `{"seq":2,"sleep_ms":600}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	waitUntil(t, "the late answer", func() bool { return p.Stats().LateAnswers == 1 })
	if again := runTx(t, p, `{"seq":3}`).Pid; again != pid {
		t.Fatal("the process was restarted")
	}
	if st := p.Stats(); st.Starts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestProcessClose: Close kills a process (and its process group) that
// ignores the end of its stdin, after the grace period; a transaction in
// flight fails with ErrProcessClosed, and so does one after Close.
func TestProcessClose(t *testing.T) {
	t.Run("ignores EOF", func(t *testing.T) {
		logs := new(logBuffer)
		p := startPool(t, "ignore-eof", gateway.ProcessConfig{StopGrace: 200 * time.Millisecond, Logger: logs.logger()})
		re := regexp.MustCompile(`mypid (\d+) grandchild (\d+)`)
		var m []string
		waitUntil(t, "the pids", func() bool { m = re.FindStringSubmatch(logs.String()); return m != nil })
		start := time.Now()
		_ = p.Close()
		if d := time.Since(start); d > testTimeout/2 {
			t.Fatalf("Close took %v", d)
		}
		for _, s := range m[1:] {
			pid, _ := strconv.Atoi(s)
			waitUntil(t, "process "+s+" to die", func() bool { return !alive(pid) })
		}
	})
	t.Run("in flight", func(t *testing.T) {
		p := startPool(t, "serve", gateway.ProcessConfig{StopGrace: 200 * time.Millisecond})
		errc := make(chan error, 1)
		go func() {
			_, err := p.Contract(testCtx(t), `{"seq":1,"hold":true}`, nil, nil)
			errc <- err
		}()
		waitUntil(t, "the transaction to be sent", func() bool { return p.Stats().InFlight == 1 })
		_ = p.Close()
		if err := <-errc; !errors.Is(err, gateway.ErrProcessClosed) {
			t.Fatalf("in flight: err %v", err)
		}
		if _, err := p.Contract(testCtx(t), `{"seq":2}`, nil, nil); !errors.Is(err, gateway.ErrProcessClosed) {
			t.Fatalf("after Close: err %v", err)
		}
		_ = p.Close() // idempotent
	})
}

func TestStartProcessesErrors(t *testing.T) {
	if _, err := gateway.StartProcesses(gateway.ProcessConfig{}); !errors.Is(err, gateway.ErrConfig) {
		t.Fatalf("no command: %v", err)
	}
	if _, err := gateway.StartProcesses(gateway.ProcessConfig{Command: []string{"/nonexistent/contract"}}); err == nil ||
		!strings.Contains(err.Error(), "start contract process") {
		t.Fatalf("missing program: %v", err)
	}
	if _, err := gateway.StartProcesses(gateway.ProcessConfig{Command: []string{"x"}, InFlight: -1}); !errors.Is(err, gateway.ErrConfig) {
		t.Fatalf("negative: %v", err)
	}
}

// TestProcessWorkers runs process-mode workers end to end: Prime
// simulator → gateway → two workers, each with its own contract process.
func TestProcessWorkers(t *testing.T) {
	const n = 200
	pools := []*gateway.ProcessPool{
		startPool(t, "serve", gateway.ProcessConfig{InFlight: 4}),
		startPool(t, "serve", gateway.ProcessConfig{InFlight: 4}),
	}
	prime := startPrime(t, primesim.Config{})
	c := startCluster(t, clusterOptions{
		workers: 2, capacity: 4, prime: primeConfig(prime),
		contractFor: func(i int) gateway.Contract { return pools[i].Contract },
	})
	ids := submit(t, prime, n)
	waitAnswered(t, prime, n, c)
	c.stop()
	checkReport(t, prime, n)
	pids := map[int]bool{}
	for i, id := range ids {
		resp, _ := prime.Answer(contract, id)
		var r childResult
		if err := json.Unmarshal([]byte(resp.GetResultJson()), &r); err != nil || resp.GetError() != "" || r.Seq != i || r.Stage != "test" || r.Secret == "" {
			t.Fatalf("transaction %d answered %v", i, resp)
		}
		pids[r.Pid] = true
	}
	if len(pids) != 2 {
		t.Fatalf("pids %v", pids)
	}
}

func TestWorkerProcessConfig(t *testing.T) {
	cfg, err := gateway.LoadWorkerConfig(writeFile(t, gridYAML+
		"mode: process\ncommand: [python3, main.py]\ntimeout: 2s\nprocess:\n  processes: 2\n  in_flight: 4\n  restart_delay: 50ms\n  env: [A=1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.ProcessConfig()
	if cfg.Mode != "process" || cfg.Capacity != 8 || pc.Processes != 2 || pc.InFlight != 4 || pc.RestartDelay != 50*time.Millisecond ||
		pc.Timeout != 2*time.Second || pc.MaxLogBytes != 64<<10 || len(pc.Env) != 1 || len(pc.Command) != 2 {
		t.Fatalf("config %+v process %+v", cfg, pc)
	}
	cfg, err = gateway.LoadWorkerConfig(writeFile(t, gridYAML+"mode: process\ncommand: [x]\ncapacity: 6\nprocess:\n  processes: 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pc := cfg.ProcessConfig(); cfg.Capacity != 6 || pc.InFlight != 2 {
		t.Fatalf("capacity %d, process %+v", cfg.Capacity, pc)
	}
	if err := cfg.Validate(); err != nil { // Validate twice
		t.Fatal(err)
	}
	if _, err := gateway.LoadWorkerConfig("testdata/worker-process.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerProcessConfigErrors(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown mode", "mode: proces\ncommand: [x]\n", `mode "proces" is neither`},
		{"process section in mode exec", "command: [x]\nprocess:\n  processes: 2\n", "process applies to mode"},
		{"output_to_chain", "mode: process\ncommand: [x]\noutput_to_chain: true\n", "output_to_chain applies to mode"},
		{"max_result_bytes", "mode: process\ncommand: [x]\nmax_result_bytes: 10\n", "max_result_bytes applies to mode"},
		{"unknown field", "mode: process\ncommand: [x]\nprocess:\n  in_flght: 3\n", "field in_flght not found"},
		{"negative", "mode: process\ncommand: [x]\nprocess:\n  in_flight: -1\n", "must not be negative"},
		{"capacity too large", "mode: process\ncommand: [x]\ncapacity: 9\nprocess:\n  in_flight: 4\n", "capacity 9 is more than"},
		{"no command", "mode: process\n", "command is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gateway.LoadWorkerConfig(writeFile(t, gridYAML+tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, gateway.ErrConfig) {
				t.Fatalf("err %v, want ErrConfig containing %q", err, tc.want)
			}
		})
	}
}

// TestProcessWorkerKill9 runs a process-mode worker end to end and kills
// its process with kill -9 while it holds a transaction: that one is
// answered with the error (as a command killed in mode exec is), the
// process is restarted, and every transaction is answered exactly once.
func TestProcessWorkerKill9(t *testing.T) {
	const n, held = 20, 5
	logs := new(logBuffer)
	pool := startPool(t, "serve", gateway.ProcessConfig{
		InFlight: 4, RestartDelay: 20 * time.Millisecond, StopGrace: 100 * time.Millisecond,
		Env: []string{"CHILD_HOLD_SEQ=" + strconv.Itoa(held)}, Logger: logs.logger(),
	})
	prime := startPrime(t, primesim.Config{})
	c := startCluster(t, clusterOptions{workers: 1, capacity: 4, prime: primeConfig(prime), contract: pool.Contract})
	ids := submit(t, prime, n)
	waitAnswered(t, prime, n-1, c) // all but the held one
	re := regexp.MustCompile(`holding 5 pid (\d+)`)
	var m []string
	waitUntil(t, "the held transaction", func() bool { m = re.FindStringSubmatch(logs.String()); return m != nil })
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitAnswered(t, prime, n, c)
	c.stop()
	checkReport(t, prime, n)
	for i, id := range ids {
		resp, _ := prime.Answer(contract, id)
		switch {
		case i == held && !(strings.Contains(resp.GetError(), "contract process exited") && strings.Contains(resp.GetError(), "signal: killed")):
			t.Fatalf("killed transaction answered %v", resp)
		case i != held && resp.GetError() != "":
			t.Fatalf("transaction %d answered %v", i, resp)
		}
	}
	waitUntil(t, "the restart", func() bool { return pool.Stats().Starts == 2 && pool.Stats().Running == 1 })
}

// TestExampleContract builds the documented standalone example contract
// (internal/examplecontract, standard library only) and runs transactions
// through it.
func TestExampleContract(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the example with")
	}
	bin := t.TempDir() + "/contract"
	if out, err := exec.Command(goTool, "build", "-o", bin, "./internal/examplecontract").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p, err := gateway.StartProcesses(gateway.ProcessConfig{Command: []string{bin}, InFlight: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx := fmt.Sprintf(`{"header":{"txn_id":"t%d"},"payload":{"seq":%d}}`, i, i)
			out, err := p.Contract(testCtx(t), tx, map[string]string{"DRAGONCHAIN_ID": "c1"}, nil)
			if err != nil || !strings.Contains(out.ResultJSON, fmt.Sprintf(`"txn_id":"t%d"`, i)) || !strings.Contains(out.Logs, "on chain c1") {
				t.Errorf("transaction %d: %+v, %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	if _, err := p.Contract(testCtx(t), "not json", nil, nil); err == nil || !strings.Contains(err.Error(), "bad transaction") {
		t.Fatalf("err %v", err)
	}
}

// BenchmarkProcessRoundTrip measures one transaction's round trip through
// a contract process (the test binary's ServeProcess), 64 in flight.
func BenchmarkProcessRoundTrip(b *testing.B) {
	p := startPool(b, "serve", gateway.ProcessConfig{InFlight: 64})
	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Contract(context.Background(), `{"seq":1}`, map[string]string{"STAGE": "b"}, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestProcessWedged: a process that stays alive but stops reading its
// stdin, and so answering, is killed once WedgedAfter transactions in a
// row passed their deadline on it, and a new process takes over.
func TestProcessWedged(t *testing.T) {
	var log logBuffer
	p := startPool(t, "stop-reading", gateway.ProcessConfig{
		Timeout: 200 * time.Millisecond, WedgedAfter: 3, RestartDelay: 10 * time.Millisecond,
		StopGrace: 100 * time.Millisecond, Logger: log.logger(),
	})
	first := runTx(t, p, `{}`).Pid
	runTx(t, p, `{}`) // its last answer
	for i := range 3 {
		if _, err := p.Contract(testCtx(t), `{}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("transaction %d on the wedged process: %v", i, err)
		}
		if st := p.Stats(); i < 2 && (st.Wedged != 0 || st.Starts != 1) {
			t.Fatalf("restarted after %d missed deadlines: %+v", i+1, st)
		}
	}
	waitUntil(t, "a new process", func() bool { st := p.Stats(); return st.Starts == 2 && st.Running == 1 })
	if st := p.Stats(); st.Wedged != 1 || st.ProtocolErrs != 0 {
		t.Fatalf("stats %+v", st)
	}
	if pid := runTx(t, p, `{}`).Pid; pid == first {
		t.Fatal("answered by the wedged process")
	}
	if alive(first) {
		t.Fatalf("wedged process %d still alive", first)
	}
	if !strings.Contains(log.String(), "stopped answering; killing it") || !strings.Contains(log.String(), gateway.ErrProcessWedged.Error()) {
		t.Fatalf("log:\n%s", log.String())
	}
}

// TestProcessWedgedCount: only transactions past their deadline count
// towards WedgedAfter, and any answer starts the count over; a caller
// that cancels neither counts nor resets it.
func TestProcessWedgedCount(t *testing.T) {
	p := startPool(t, "serve", gateway.ProcessConfig{
		InFlight: 8, Timeout: 150 * time.Millisecond, WedgedAfter: 2, RestartDelay: 10 * time.Millisecond,
		StopGrace: 100 * time.Millisecond,
	})
	missed := func() {
		t.Helper()
		if _, err := p.Contract(testCtx(t), `{"hold":true}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("held transaction: %v", err)
		}
	}
	cancelled := func() {
		t.Helper()
		ctx, cancel := context.WithCancel(testCtx(t))
		cancel()
		if _, err := p.Contract(ctx, `{"hold":true}`, nil, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled transaction: %v", err)
		}
	}
	missed()
	runTx(t, p, `{"seq":1}`) // an answer: the count starts over
	missed()
	cancelled()
	cancelled()
	if st := p.Stats(); st.Wedged != 0 || st.Starts != 1 {
		t.Fatalf("restarted: %+v", st)
	}
	missed() // two in a row, the cancelled ones aside
	waitUntil(t, "the restart", func() bool { st := p.Stats(); return st.Wedged == 1 && st.Starts == 2 && st.Running == 1 })
	runTx(t, p, `{"seq":2}`)
}

// TestProcessCancel: a transaction given up on, past its deadline or
// cancelled by its caller, is cancelled on its process (a ServeProcess
// contract), whose contract sees ErrProcessCancelled; the process keeps
// running. The first one is given up on while the process has just
// started, perhaps before its hello: it is cancelled all the same.
func TestProcessCancel(t *testing.T) {
	logs := new(logBuffer)
	p := startPool(t, "serve", gateway.ProcessConfig{InFlight: 2, Timeout: 300 * time.Millisecond, Logger: logs.logger()})
	cancelled := func(seq int) bool {
		return strings.Contains(logs.String(), fmt.Sprintf("cancelled %d: %v", seq, gateway.ErrProcessCancelled))
	}
	if _, err := p.Contract(testCtx(t), `{"seq":1,"wait":true}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("past its deadline: err %v", err)
	}
	waitUntil(t, "the contract to see the cancel of 1", func() bool { return cancelled(1) })

	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := p.Contract(ctx, `{"seq":2,"wait":true}`, nil, nil)
		errc <- err
	}()
	waitUntil(t, "transaction 2 to run", func() bool { return strings.Contains(logs.String(), "waiting 2 ") })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled by its caller: err %v", err)
	}
	waitUntil(t, "the contract to see the cancel of 2", func() bool { return cancelled(2) })
	waitUntil(t, "both late answers", func() bool { return p.Stats().LateAnswers == 2 })
	runTx(t, p, `{"seq":3}`)
	if st := p.Stats(); st.Cancelled != 2 || st.Starts != 1 || st.Wedged != 0 || st.ProtocolErrs != 0 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestProcessOldChildGetsNoCancel: a process that never said hello (one
// written before cancel lines, which dies on any line that is not a
// request) is sent no cancel line when a transaction passes its
// deadline: it answers late and stays up.
func TestProcessOldChildGetsNoCancel(t *testing.T) {
	logs := new(logBuffer)
	p := startPool(t, "old", gateway.ProcessConfig{InFlight: 2, Timeout: 200 * time.Millisecond, RestartDelay: 10 * time.Millisecond, Logger: logs.logger()})
	if _, err := p.Contract(testCtx(t), `{"seq":1,"sleep_ms":600}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	waitUntil(t, "the late answer", func() bool { return p.Stats().LateAnswers == 1 })
	pid := runTx(t, p, `{"seq":2}`).Pid
	if _, err := p.Contract(testCtx(t), `{"seq":3,"sleep_ms":600}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	waitUntil(t, "the second late answer", func() bool { return p.Stats().LateAnswers == 2 })
	if again := runTx(t, p, `{"seq":4}`).Pid; again != pid {
		t.Fatalf("answered by pid %d, then %d: the old process was restarted", pid, again)
	}
	if st := p.Stats(); st.Cancelled != 0 || st.Starts != 1 || st.Ended != 0 || st.ProtocolErrs != 0 {
		t.Fatalf("stats %+v", st)
	}
	if strings.Contains(logs.String(), "not a request") {
		t.Fatalf("the old process was sent a line that is not a request:\n%s", logs)
	}
}
