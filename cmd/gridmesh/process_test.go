package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMainProcess is not a test: the process tests below run the test
// binary again with GRIDMESH_TEST_ARGS set, and then it is the gridmesh
// command.
func TestMainProcess(t *testing.T) {
	args := os.Getenv("GRIDMESH_TEST_ARGS")
	if args == "" {
		t.Skip("runs only as a child of the process tests")
	}
	os.Args = append([]string{"gridmesh"}, strings.Fields(args)...)
	main()
}

// child is the gridmesh command running as a separate process.
type child struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startChild(t *testing.T, ctx context.Context, args ...string) *child {
	t.Helper()
	return startChildEnv(t, ctx, nil, args...)
}

// startChildEnv is startChild with more environment variables.
func startChildEnv(t *testing.T, ctx context.Context, more []string, args ...string) *child {
	t.Helper()
	command, env := testCommand(t, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Env = append(append(os.Environ(), env...), more...)
	c := &child{cmd: cmd, stderr: new(syncBuffer), done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = c.stderr, c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

// term sends the child SIGTERM and checks that it exits cleanly; what
// names it in the failure.
func (c *child) term(t *testing.T, what string) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.wait(t); err != nil {
		t.Fatalf("%s exit after SIGTERM: %v\n%s", what, err, c.stderr.String())
	}
}

// wait waits for the child to exit and returns its error.
func (c *child) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err // for the cleanup
		return err
	case <-time.After(gatewayTestTimeout):
		t.Fatalf("process did not exit; output:\n%s", c.stderr.String())
		return nil
	}
}

// TestProcessesKill9WorkerAndSIGTERM runs the gateway and two workers as
// separate processes. One worker is killed with kill -9 while it runs
// transactions: they are re-dispatched to the other. Then the gateway and
// the surviving worker get SIGTERM and exit cleanly, and every transaction
// was answered exactly once.
func TestProcessesKill9WorkerAndSIGTERM(t *testing.T) {
	const n = 300
	prime, ctx := processTest(t)

	c := newTestCluster(t, 2)
	dir := c.dir
	gwCfg := c.gatewayConfig(prime.Addr().String(), "drain_timeout: 10s\n")
	workerCfg := func(i int) string {
		script := fmt.Sprintf(`cat >/dev/null; touch %s/busy%d; sleep 0.02; echo '{"worker":%d}'`, dir, i, i)
		return c.workerConfig(i, fmt.Sprintf("command: [sh, -c, %q]\ncapacity: 4\n", script))
	}
	w1 := startChild(t, ctx, "worker", "-config", workerCfg(1))
	w2 := startChild(t, ctx, "worker", "-config", workerCfg(2))
	gw := startChild(t, ctx, "gateway", "-config", gwCfg)

	if err := prime.Generate(ctx, "sc", n, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(gatewayTestTimeout)
	for {
		if _, err := os.Stat(filepath.Join(dir, "busy1")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker 1 never ran a transaction:\n%s", w1.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := w1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := prime.WaitAnswered(ctx, n); err != nil {
		t.Fatalf("%v\n%v\ngateway:\n%s", err, prime.Report(), gw.stderr.String())
	}
	for _, c := range []*child{gw, w2} {
		c.term(t, "process")
	}
	if r := prime.Report(); !r.OK() {
		t.Fatalf("report:\n%v", r)
	}
	logs := gw.stderr.String()
	for _, want := range []string{"re-dispatching", "gateway: shutting down", "gateway: stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("gateway log lacks %q:\n%s", want, logs)
		}
	}
}
