package primesim_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// childEnv, when set, makes the test binary a simulator process (see
// runChild) instead of running the tests: the crash tests kill it with
// SIGKILL, a real kill -9.
const childEnv = "PRIMESIM_TEST_CHILD"

// childCommitInterval is the children's Config.CommitInterval.
const childCommitInterval = 20 * time.Millisecond

// childArgs configure a child: its state file, the load it generates
// (GenerateUpTo count), its LossWindow, and killAt > 0 makes it send
// itself SIGKILL once that many transactions are answered.
type childArgs struct {
	state  string
	count  int
	window time.Duration
	killAt int
}

func (a childArgs) env() string {
	return fmt.Sprintf("%s %d %s %d", a.state, a.count, a.window, a.killAt)
}

// runChild is a simulator process. It prints "addr ADDR" once serving,
// "durable N" whenever N answers are written to its state file, and at
// SIGTERM closes, prints its report and exits 0 if the report is OK, 1
// otherwise.
func runChild(spec string) int {
	var a childArgs
	var window string
	if _, err := fmt.Sscan(spec, &a.state, &a.count, &window, &a.killAt); err != nil {
		fmt.Println("bad child spec:", err)
		return 2
	}
	a.window, _ = time.ParseDuration(window)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	s, err := primesim.New(primesim.Config{
		APIKey: apiKey, Contracts: []string{contract}, ChainID: chainID,
		StatePath: a.state, CommitInterval: childCommitInterval, LossWindow: a.window,
	})
	if err == nil {
		err = s.Start("127.0.0.1:0")
	}
	if err != nil {
		fmt.Println("child:", err)
		return 2
	}
	fmt.Println("addr", s.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.GenerateUpTo(ctx, contract, a.count, 0); err != nil {
		fmt.Println("child: generate:", err)
		return 2
	}
	if a.killAt > 0 {
		go func() {
			if s.WaitAnswered(ctx, a.killAt) == nil {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}()
	}
	go func() {
		for n := 1; s.WaitDurable(ctx, n) == nil; n++ {
			fmt.Println("durable", s.Report().DurableAnswered)
			n = s.Report().DurableAnswered
		}
	}()
	<-term
	cancel()
	_ = s.Close()
	r := s.Report()
	fmt.Print("report\n", r)
	if !r.OK() {
		return 1
	}
	return 0
}

// simProcess is a child simulator as seen by a test.
type simProcess struct {
	cmd   *exec.Cmd
	addr  string
	lines chan string // its stdout, line by line; closed at EOF
	done  chan error
	out   []string // lines read so far
}

// startSim runs a child simulator and waits until it serves.
func startSim(t *testing.T, a childArgs) *simProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+a.env(), "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &simProcess{cmd: cmd, lines: make(chan string, 64), done: make(chan error, 1)}
	go func(lines chan<- string) {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.done <- cmd.Wait()
	}(p.lines)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range p.lines {
		}
		<-p.done
	})
	p.addr = strings.TrimPrefix(p.waitLine(t, "addr "), "addr ")
	return p
}

// waitLine returns the first line from now on that starts with prefix.
func (p *simProcess) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("simulator exited before printing %q; it printed:\n%s", prefix, strings.Join(p.out, "\n"))
			}
			p.out = append(p.out, l)
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout.C:
			t.Fatalf("simulator did not print %q within %v; it printed:\n%s", prefix, testTimeout, strings.Join(p.out, "\n"))
		}
	}
}

// waitDurable waits until the simulator has written n answers.
func (p *simProcess) waitDurable(t *testing.T, n int) {
	t.Helper()
	for {
		l := p.waitLine(t, "durable ")
		if got, _ := strconv.Atoi(strings.TrimPrefix(l, "durable ")); got >= n {
			return
		}
	}
}

// exit waits for the process to end and returns the rest of its output
// and its exit error.
func (p *simProcess) exit(t *testing.T) (string, error) {
	t.Helper()
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	var rest []string
	for {
		select {
		case l, ok := <-p.lines:
			if ok {
				rest = append(rest, l)
				continue
			}
			err := <-p.done
			p.done <- err // for the cleanup
			p.lines = make(chan string)
			close(p.lines)
			return strings.Join(rest, "\n"), err
		case <-timeout.C:
			t.Fatalf("simulator did not exit within %v", testTimeout)
		}
	}
}

// kill9 kills the simulator with SIGKILL and waits until it is gone.
func (p *simProcess) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.expectKilled(t)
}

// expectKilled waits for the process to die of SIGKILL.
func (p *simProcess) expectKilled(t *testing.T) {
	t.Helper()
	_, err := p.exit(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("simulator ended with %v, want death by SIGKILL", err)
	}
}

// term stops the simulator with SIGTERM and returns the report it prints;
// it fails the test unless the report is OK.
func (p *simProcess) term(t *testing.T) string {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	out, err := p.exit(t)
	if err != nil || !strings.Contains(out, "primesim report: OK") {
		t.Fatalf("simulator exit %v; output:\n%s", err, out)
	}
	return out
}
