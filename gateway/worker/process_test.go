package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// childEnv names the contract a re-executed test binary plays.
const childEnv = "GATEWAY_TEST_PROCESS_CHILD"

// TestProcessChild is not a test: the process tests run the test binary
// again with childEnv set, and then it is a contract process. Re-running
// the test binary needs no toolchain or file outside the test, and the
// child can use contract.ServeProcess like any Go contract.
func TestProcessChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("runs only as a child of the process tests")
	}
	switch mode {
	case "serve":
		if err := contract.ServeProcess(context.Background(), os.Stdin, os.Stdout, childContract); err != nil {
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
	case "trace":
		if err := contract.ServeProcess(context.Background(), os.Stdin, os.Stdout, traceContract); err != nil {
			os.Exit(1)
		}
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
func childContract(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
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
		return contract.Output{}, err
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
		return contract.Output{Logs: "failing on purpose"}, errors.New(tx.Fail)
	case tx.Wait:
		fmt.Fprintf(os.Stderr, "waiting %d pid %d\n", tx.Seq, os.Getpid())
		<-ctx.Done()
		fmt.Fprintf(os.Stderr, "cancelled %d: %v\n", tx.Seq, context.Cause(ctx))
		return contract.Output{}, context.Cause(ctx)
	case tx.After != nil:
		<-childDoneCh(*tx.After)
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Duration(tx.SleepMS) * time.Millisecond)
	defer childMarkDone(tx.Seq)
	return contract.Output{
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

func parseResult(tb testing.TB, out contract.Output) childResult {
	tb.Helper()
	var r childResult
	if err := json.Unmarshal([]byte(out.ResultJSON), &r); err != nil {
		tb.Fatalf("result %q: %v", out.ResultJSON, err)
	}
	return r
}

// startPool starts processes of the test binary playing mode.
func startPool(tb testing.TB, mode string, cfg worker.ProcessConfig) *worker.ProcessPool {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Command = []string{exe, "-test.run=^TestProcessChild$"}
	// A race-enabled binary sleeps 1 s at exit unless told not to.
	cfg.Env = append(cfg.Env, childEnv+"="+mode, "GORACE=atexit_sleep_ms=0")
	p, err := worker.StartProcesses(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// runTx runs one transaction on p, failing the test on an error.
// within is a test context that ends after d: the deadline of a
// transaction meant to miss it. Transactions meant to be answered get
// testutil's long deadline, so that a loaded machine cannot fail them.
func within(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(testutil.Context(tb), d)
	tb.Cleanup(cancel)
	return ctx
}

func runTx(tb testing.TB, p *worker.ProcessPool, txJSON string) childResult {
	tb.Helper()
	out, err := p.Contract(testutil.Context(tb), txJSON, nil, nil)
	if err != nil {
		tb.Fatalf("transaction %s: %v", txJSON, err)
	}
	return parseResult(tb, out)
}

// TestProcessRoundTrip runs many transactions at once through two
// processes; each answer matches its transaction.
func TestProcessRoundTrip(t *testing.T) {
	p := startPool(t, "serve", worker.ProcessConfig{Processes: 2, InFlight: 8})
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
			out, err := p.Contract(testutil.Context(t), fmt.Sprintf(`{"seq":%d,"sleep_ms":%d}`, i, i%4),
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
	p := startPool(t, "serve", worker.ProcessConfig{InFlight: 2})
	order := make(chan int, 2)
	first := make(chan error, 1)
	go func() {
		_, err := p.Contract(testutil.Context(t), `{"seq":1,"after":2}`, nil, nil)
		order <- 1
		first <- err
	}()
	testutil.WaitUntil(t, "the first transaction to be sent", func() bool { return p.Stats().InFlight == 1 })
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
	p := startPool(t, "serve", worker.ProcessConfig{})
	out, err := p.Contract(testutil.Context(t), `{"seq":1,"fail":"no such account"}`, nil, nil)
	if err == nil || err.Error() != "no such account" || out.Logs != "failing on purpose" {
		t.Fatalf("err %v, out %+v", err, out)
	}
	runTx(t, p, `{"seq":2}`)
	if st := p.Stats(); st.Starts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkProcessRoundTrip measures one transaction's round trip through
// a contract process (the test binary's ServeProcess), 64 in flight.
func BenchmarkProcessRoundTrip(b *testing.B) {
	p := startPool(b, "serve", worker.ProcessConfig{InFlight: 64})
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

// TestProcessCancel: a transaction given up on, past its deadline or
// cancelled by its caller, is cancelled on its process (a ServeProcess
// contract), whose contract sees contract.ErrCancelled; the process keeps
// running. The first one is given up on while the process has just
// started, perhaps before its hello: it is cancelled all the same.
func TestProcessCancel(t *testing.T) {
	logs := new(testutil.LogBuffer)
	p := startPool(t, "serve", worker.ProcessConfig{InFlight: 2, Logger: logs.Logger()})
	cancelled := func(seq int) bool {
		return strings.Contains(logs.String(), fmt.Sprintf("cancelled %d: %v", seq, contract.ErrCancelled))
	}
	if _, err := p.Contract(within(t, 300*time.Millisecond), `{"seq":1,"wait":true}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("past its deadline: err %v", err)
	}
	testutil.WaitUntil(t, "the contract to see the cancel of 1", func() bool { return cancelled(1) })

	ctx, cancel := context.WithCancel(testutil.Context(t))
	errc := make(chan error, 1)
	go func() {
		_, err := p.Contract(ctx, `{"seq":2,"wait":true}`, nil, nil)
		errc <- err
	}()
	testutil.WaitUntil(t, "transaction 2 to run", func() bool { return strings.Contains(logs.String(), "waiting 2 ") })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled by its caller: err %v", err)
	}
	testutil.WaitUntil(t, "the contract to see the cancel of 2", func() bool { return cancelled(2) })
	testutil.WaitUntil(t, "both late answers", func() bool { return p.Stats().LateAnswers == 2 })
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
	logs := new(testutil.LogBuffer)
	p := startPool(t, "old", worker.ProcessConfig{InFlight: 2, RestartDelay: 10 * time.Millisecond, Logger: logs.Logger()})
	if _, err := p.Contract(within(t, 200*time.Millisecond), `{"seq":1,"sleep_ms":600}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	testutil.WaitUntil(t, "the late answer", func() bool { return p.Stats().LateAnswers == 1 })
	pid := runTx(t, p, `{"seq":2}`).Pid
	if _, err := p.Contract(within(t, 200*time.Millisecond), `{"seq":3,"sleep_ms":600}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	testutil.WaitUntil(t, "the second late answer", func() bool { return p.Stats().LateAnswers == 2 })
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
