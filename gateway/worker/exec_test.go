package worker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

func execContract(tb testing.TB, cfg worker.ExecConfig) contract.Func {
	tb.Helper()
	fn, err := worker.ExecContract(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return fn
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func TestExecContract(t *testing.T) {
	fn := execContract(t, worker.ExecConfig{
		Command:       sh(`in=$(cat); echo "log line" >&2; printf '{"in":%s,"stage":"%s","key":"%s"}' "$in" "$STAGE" "$SC_SECRET_SECRET_KEY"`),
		OutputToChain: true,
	})
	out, err := fn(testutil.Context(t), `{"a":1}`, map[string]string{"STAGE": "test"}, map[string]string{"secret-key": "s3"})
	if err != nil {
		t.Fatal(err)
	}
	if out.ResultJSON != `{"in":{"a":1},"stage":"test","key":"s3"}` || out.Logs != "log line\n" || !out.OutputToChain {
		t.Fatalf("output %+v", out)
	}
}

func TestExecContractErrors(t *testing.T) {
	cases := []struct {
		name, script string
		cfg          worker.ExecConfig
		want         string
	}{
		{"exit status", `echo oops >&2; exit 3`, worker.ExecConfig{}, "exit status 3"},
		{"kill -9 itself", `echo before >&2; kill -9 $$`, worker.ExecConfig{}, "signal: killed"},
		{"invalid json", `echo not-json`, worker.ExecConfig{}, "invalid JSON"},
		{"stdout too large", `head -c 5000 /dev/zero`, worker.ExecConfig{MaxResultBytes: 100}, "more than 100 bytes"},
		{"timeout", `sleep 5`, worker.ExecConfig{Timeout: 100 * time.Millisecond}, "contract killed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Command = sh(tc.script)
			_, err := execContract(t, tc.cfg)(testutil.Context(t), "{}", nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestExecLogsBounded(t *testing.T) {
	fn := execContract(t, worker.ExecConfig{Command: sh(`head -c 100000 /dev/zero | tr '\0' x >&2; echo '{}'`), MaxLogBytes: 1000})
	out, err := fn(testutil.Context(t), "{}", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Logs) > 1100 || !strings.Contains(out.Logs, "logs cut at 1000 bytes") {
		t.Fatalf("logs of %d bytes: %.80q...", len(out.Logs), out.Logs)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// TestExecTimeoutKillsChildren: the contract starts a grandchild and
// hangs; the timeout kills the whole process group.
func TestExecTimeoutKillsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	fn := execContract(t, worker.ExecConfig{
		Command: sh(`sleep 60 & echo $! > ` + pidFile + `; wait`),
		Timeout: 2 * time.Second, // time to fork sleep and write its pid on a loaded machine
	})
	start := time.Now()
	_, err := fn(testutil.Context(t), "{}", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "contract killed") {
		t.Fatalf("err %v, want killed", err)
	}
	if el := time.Since(start); el > testutil.Timeout/2 {
		t.Fatalf("took %v", el)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, "the grandchild to die", func() bool { return !alive(pid) })
}

// TestExecWorkerKill9 runs exec-mode workers end to end; one contract
// process is killed with kill -9 from outside while it runs. That
// transaction is answered with an error, every other one normally, each
// exactly once.
func TestExecWorkerKill9(t *testing.T) {
	const n = 20
	dir := t.TempDir()
	// seq 5 records its pid and waits; the others answer at once.
	script := `tx=$(cat); case "$tx" in *'"seq":5,'*) echo $$ > ` + dir + `/pid; sleep 30;; esac; printf '{"ok":true}'`
	fn := execContract(t, worker.ExecConfig{Command: sh(script), OutputToChain: true})
	prime := testcluster.StartPrime(t, primesim.Config{})
	c := testcluster.Start(t, testcluster.Options{Workers: 2, Capacity: 2, Prime: testcluster.PrimeConfig(prime), Contract: fn})
	ids := testcluster.Submit(t, prime, n)
	var pid int
	testutil.WaitUntil(t, "the contract's pid", func() bool {
		b, err := os.ReadFile(dir + "/pid")
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	testcluster.CheckReport(t, prime, n)
	for i, id := range ids {
		resp, _ := prime.Answer(testcluster.ContractID, id)
		switch {
		case i == 5 && !strings.Contains(resp.GetError(), "signal: killed"):
			t.Fatalf("killed transaction answered %v", resp)
		case i != 5 && (resp.GetError() != "" || resp.GetResultJson() != `{"ok":true}`):
			t.Fatalf("transaction %d answered %v", i, resp)
		}
	}
}

func TestExecContractContextCancel(t *testing.T) {
	fn := execContract(t, worker.ExecConfig{Command: sh(`sleep 30`)})
	ctx, cancel := context.WithTimeout(testutil.Context(t), 100*time.Millisecond)
	defer cancel()
	if _, err := fn(ctx, "{}", nil, nil); err == nil {
		t.Fatal("no error")
	}
}
