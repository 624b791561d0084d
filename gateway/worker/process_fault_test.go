package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestProcessKill9: the process is killed with kill -9 while it holds
// transactions; they all fail at once with ErrProcessExited, the process
// is started again and takes the next transaction.
func TestProcessKill9(t *testing.T) {
	logs := new(testutil.LogBuffer)
	p := startPool(t, "serve", worker.ProcessConfig{InFlight: 4, RestartDelay: 20 * time.Millisecond, StopGrace: 100 * time.Millisecond, Logger: logs.Logger()})
	pid := runTx(t, p, `{"seq":0}`).Pid
	errs := make(chan error, 4)
	for i := 1; i <= 4; i++ {
		go func() {
			_, err := p.Contract(testutil.Context(t), fmt.Sprintf(`{"seq":%d,"hold":true}`, i), nil, nil)
			errs <- err
		}()
	}
	testutil.WaitUntil(t, "four held transactions", func() bool { return strings.Count(logs.String(), "holding") == 4 })
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		var err error
		select {
		case err = <-errs:
		case <-time.After(testutil.Timeout):
			t.Fatal("held transactions not failed")
		}
		if !errors.Is(err, worker.ErrProcessExited) || !strings.Contains(err.Error(), "signal: killed") ||
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
			p := startPool(t, "serve", worker.ProcessConfig{MaxLineBytes: 64 << 10, RestartDelay: 10 * time.Millisecond})
			pid := runTx(t, p, `{"seq":0}`).Pid
			_, err := p.Contract(testutil.Context(t), tc.tx, nil, nil)
			if !errors.Is(err, worker.ErrProcessProtocol) || !strings.Contains(err.Error(), tc.want) {
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
	p := startPool(t, "close-stdout", worker.ProcessConfig{RestartDelay: time.Hour})
	_, err := p.Contract(testutil.Context(t), `{"seq":1}`, nil, nil)
	if !errors.Is(err, worker.ErrProcessProtocol) || !strings.Contains(err.Error(), "closed its stdout but kept running") {
		t.Fatalf("err %v", err)
	}
}

// TestProcessCrashLoop: a process that exits at once is restarted with a
// growing backoff, so the restarts over a window are few, and logged
// once; a transaction meanwhile fails with a clear error.
func TestProcessCrashLoop(t *testing.T) {
	logs := new(testutil.LogBuffer)
	p := startPool(t, "exit", worker.ProcessConfig{RestartDelay: 20 * time.Millisecond, MaxRestartDelay: 10 * time.Second, Logger: logs.Logger()})
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
	ctx, cancel := context.WithTimeout(testutil.Context(t), 300*time.Millisecond)
	defer cancel()
	_, err := p.Contract(ctx, `{"seq":1}`, nil, nil)
	switch {
	case errors.Is(err, worker.ErrProcessDown) || errors.Is(err, worker.ErrProcessExited):
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
	logs := new(testutil.LogBuffer)
	p, err := worker.StartProcesses(worker.ProcessConfig{Command: []string{script}, RestartDelay: 20 * time.Millisecond, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, "a failed start", func() bool { return strings.Contains(logs.String(), "start contract process") })
	ctx, cancel := context.WithTimeout(testutil.Context(t), 100*time.Millisecond)
	defer cancel()
	if _, err := p.Contract(ctx, "{}", nil, nil); !errors.Is(err, worker.ErrProcessDown) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err %v", err)
	}
}

// TestProcessTimeout: a transaction past its deadline answers its caller
// with an error; the process keeps running, and its late answer is
// dropped. The pool's timeout is long enough for a loaded machine to
// answer the quick transactions (a held one costs the test that long).
func TestProcessTimeout(t *testing.T) {
	p := startPool(t, "serve", worker.ProcessConfig{InFlight: 2, Timeout: 3 * time.Second, StopGrace: 100 * time.Millisecond})
	pid := runTx(t, p, `{"seq":0}`).Pid
	_, err := p.Contract(testutil.Context(t), `{"seq":1,"hold":true}`, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("err %v", err)
	}
	ctx, cancel := context.WithTimeout(testutil.Context(t), 150*time.Millisecond)
	defer cancel()
	if _, err := p.Contract(ctx, `{"seq":2,"sleep_ms":600}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	testutil.WaitUntil(t, "the late answer", func() bool { return p.Stats().LateAnswers == 1 })
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
		logs := new(testutil.LogBuffer)
		p := startPool(t, "ignore-eof", worker.ProcessConfig{StopGrace: 200 * time.Millisecond, Logger: logs.Logger()})
		re := regexp.MustCompile(`mypid (\d+) grandchild (\d+)`)
		var m []string
		testutil.WaitUntil(t, "the pids", func() bool { m = re.FindStringSubmatch(logs.String()); return m != nil })
		start := time.Now()
		_ = p.Close()
		if d := time.Since(start); d > testutil.Timeout/2 {
			t.Fatalf("Close took %v", d)
		}
		for _, s := range m[1:] {
			pid, _ := strconv.Atoi(s)
			testutil.WaitUntil(t, "process "+s+" to die", func() bool { return !alive(pid) })
		}
	})
	t.Run("in flight", func(t *testing.T) {
		p := startPool(t, "serve", worker.ProcessConfig{StopGrace: 200 * time.Millisecond})
		errc := make(chan error, 1)
		go func() {
			_, err := p.Contract(testutil.Context(t), `{"seq":1,"hold":true}`, nil, nil)
			errc <- err
		}()
		testutil.WaitUntil(t, "the transaction to be sent", func() bool { return p.Stats().InFlight == 1 })
		_ = p.Close()
		if err := <-errc; !errors.Is(err, worker.ErrProcessClosed) {
			t.Fatalf("in flight: err %v", err)
		}
		if _, err := p.Contract(testutil.Context(t), `{"seq":2}`, nil, nil); !errors.Is(err, worker.ErrProcessClosed) {
			t.Fatalf("after Close: err %v", err)
		}
		_ = p.Close() // idempotent
	})
}

func TestStartProcessesErrors(t *testing.T) {
	if _, err := worker.StartProcesses(worker.ProcessConfig{}); !errors.Is(err, worker.ErrConfig) {
		t.Fatalf("no command: %v", err)
	}
	if _, err := worker.StartProcesses(worker.ProcessConfig{Command: []string{"/nonexistent/contract"}}); err == nil ||
		!strings.Contains(err.Error(), "start contract process") {
		t.Fatalf("missing program: %v", err)
	}
	if _, err := worker.StartProcesses(worker.ProcessConfig{Command: []string{"x"}, InFlight: -1}); !errors.Is(err, worker.ErrConfig) {
		t.Fatalf("negative: %v", err)
	}
}

// TestProcessWedged: a process that stays alive but stops reading its
// stdin, and so answering, is killed once WedgedAfter transactions in a
// row passed their deadline on it, and a new process takes over.
func TestProcessWedged(t *testing.T) {
	var log testutil.LogBuffer
	p := startPool(t, "stop-reading", worker.ProcessConfig{
		WedgedAfter: 3, RestartDelay: 10 * time.Millisecond,
		StopGrace: 100 * time.Millisecond, Logger: log.Logger(),
	})
	first := runTx(t, p, `{}`).Pid
	runTx(t, p, `{}`) // its last answer
	for i := range 3 {
		if _, err := p.Contract(within(t, 200*time.Millisecond), `{}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("transaction %d on the wedged process: %v", i, err)
		}
		if st := p.Stats(); i < 2 && (st.Wedged != 0 || st.Starts != 1) {
			t.Fatalf("restarted after %d missed deadlines: %+v", i+1, st)
		}
	}
	testutil.WaitUntil(t, "a new process", func() bool { st := p.Stats(); return st.Starts == 2 && st.Running == 1 })
	if st := p.Stats(); st.Wedged != 1 || st.ProtocolErrs != 0 {
		t.Fatalf("stats %+v", st)
	}
	if pid := runTx(t, p, `{}`).Pid; pid == first {
		t.Fatal("answered by the wedged process")
	}
	if alive(first) {
		t.Fatalf("wedged process %d still alive", first)
	}
	if !strings.Contains(log.String(), "stopped answering; killing it") || !strings.Contains(log.String(), worker.ErrProcessWedged.Error()) {
		t.Fatalf("log:\n%s", log.String())
	}
}

// TestProcessWedgedCount: only transactions past their deadline count
// towards WedgedAfter, and any answer starts the count over; a caller
// that cancels neither counts nor resets it.
func TestProcessWedgedCount(t *testing.T) {
	// No pool-wide Timeout: the held transactions have a short deadline
	// of their own, and those that must be answered (one by a process
	// just restarted on a loaded machine) testutil's long one.
	p := startPool(t, "serve", worker.ProcessConfig{
		InFlight: 8, WedgedAfter: 2, RestartDelay: 10 * time.Millisecond,
		StopGrace: 100 * time.Millisecond,
	})
	missed := func() {
		t.Helper()
		if _, err := p.Contract(within(t, 200*time.Millisecond), `{"hold":true}`, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("held transaction: %v", err)
		}
	}
	cancelled := func() {
		t.Helper()
		ctx, cancel := context.WithCancel(testutil.Context(t))
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
	testutil.WaitUntil(t, "the restart", func() bool { st := p.Stats(); return st.Wedged == 1 && st.Starts == 2 && st.Running == 1 })
	runTx(t, p, `{"seq":2}`)
}
