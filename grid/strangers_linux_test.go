//go:build linux

package grid

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The node under attack runs in a child process (this test binary run
// again) whose open-file limit is strangerFileLimit: a real limit, which
// accept(2) hits, not a count the test keeps.
const (
	strangerChildEnv  = "GRID_STRANGER_CHILD"
	strangerFileLimit = 256
	strangers         = 2000
	// strangerHandshake is every node's HandshakeTimeout here: how long
	// the node under attack gives a connection to send its request.
	strangerHandshake = 2 * time.Second
	// reconnectBound is how soon a restarted peer must be back.
	reconnectBound = 10 * time.Second
)

// strangerSpec is what the parent tells a child, in strangerChildEnv.
type strangerSpec struct {
	Role  string // "node" (the node under attack) or "strangers"
	Local string // the node's name
	Peer  string // the real peer's name, which the strangers forge
	Hosts []string
}

// TestStrangerChild is not a test: TestStrangersCannotExhaustNode runs the
// test binary again with strangerChildEnv set, and then it is the node
// under attack or the strangers, each in a process of its own, as they
// would be on a network: the strangers must not slow down the real peer
// by sharing its process.
func TestStrangerChild(t *testing.T) {
	spec := os.Getenv(strangerChildEnv)
	if spec == "" {
		t.Skip("runs only as a child of TestStrangersCannotExhaustNode")
	}
	os.Exit(runStrangerChild(spec))
}

// childFail reports a child's failure and returns its exit code.
func childFail(err error) int {
	fmt.Fprintln(os.Stderr, "child:", err)
	return 2
}

// waitStdin returns a channel closed when stdin ends: the parent's signal
// to stop.
func waitStdin() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(ch)
	}()
	return ch
}

func runStrangerChild(specJSON string) int {
	var spec strangerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return childFail(err)
	}
	if spec.Role == "strangers" {
		return runStrangers(spec)
	}
	return runAttackedNode(spec)
}

// runStrangers runs the strangers against spec.Local until stdin ends,
// writing "ready" once they started and a "kind" line for each kind of
// stranger at the end.
func runStrangers(spec strangerSpec) int {
	u, err := parseHost(spec.Local)
	if err != nil {
		return childFail(err)
	}
	hosts := slices.Clone(spec.Hosts)
	slices.Sort(hosts)
	var kinds []*strangerStats
	for _, k := range strangerKinds {
		kinds = append(kinds, &strangerStats{kind: k})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range strangers {
		st := kinds[i%len(kinds)]
		wg.Go(func() { stranger(ctx, u.Host, i/len(kinds), st, spec.Local, spec.Peer, hostsHash(hosts)) })
	}
	fmt.Println("ready")
	select {
	case <-waitStdin():
	case <-time.After(2 * time.Minute):
		cancel()
		wg.Wait()
		return childFail(errors.New("not told to stop within 2 minutes"))
	}
	cancel()
	wg.Wait()
	for _, st := range kinds {
		fmt.Println("kind", st)
	}
	return 0
}

// runAttackedNode serves a node on the listener inherited as fd 3, under
// a file limit of strangerFileLimit, until its stdin closes. It writes
// "ready" when it serves, a "stat" line every second and a "done" line at
// the end, each with its open files (now and at most) and the
// connections its bound closed.
func runAttackedNode(spec strangerSpec) int {
	fail := childFail
	lim := syscall.Rlimit{Cur: strangerFileLimit, Max: strangerFileLimit}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fail(err)
	}
	f := os.NewFile(3, "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fail(err)
	}
	o := baseOptions(spec.Local, spec.Hosts)
	o.HandshakeTimeout = strangerHandshake
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := StartNode(context.Background(), ln, o) // MaxPendingConns: the default
	if err != nil {
		return fail(err)
	}
	err = n.Manager.RegisterSingleHandler(hWho, func(_ context.Context, p []byte) ([]byte, error) {
		return []byte(spec.Local + ":" + string(p)), nil
	})
	if err != nil {
		return fail(err)
	}
	var maxFiles atomic.Int64
	files := func() int64 {
		ents, _ := os.ReadDir("/proc/self/fd")
		k := int64(len(ents))
		for {
			m := maxFiles.Load()
			if k <= m || maxFiles.CompareAndSwap(m, k) {
				return k
			}
		}
	}
	report := func(what string) {
		pending, closed := n.pending.counts()
		fmt.Printf("%s files=%d max_files=%d pending=%d closed=%d max_pending=%d\n",
			what, files(), maxFiles.Load(), pending, closed, n.Manager.opts.MaxPendingConns)
	}
	report("ready")
	stdinClosed := waitStdin()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastStat := time.Now()
	watchdog := time.After(2 * time.Minute)
loop:
	for {
		select {
		case <-stdinClosed:
			break loop
		case <-watchdog:
			return fail(errors.New("not told to stop within 2 minutes"))
		case <-tick.C:
			files()
			if time.Since(lastStat) >= time.Second {
				report("stat")
				lastStat = time.Now()
			}
		}
	}
	report("done")
	if err := n.Close(); err != nil {
		return fail(err)
	}
	return 0
}

// strangerChild is a child process (the node under attack, or the
// strangers), seen from the parent.
type strangerChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // its stdout
	stderr *lockedBuffer
	done   chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startStrangerChild runs a child process as spec says and waits for it
// to be ready. The node is given ln, which the parent closes.
func startStrangerChild(t *testing.T, ctx context.Context, spec strangerSpec, ln net.Listener) *strangerChild {
	t.Helper()
	js, _ := json.Marshal(spec)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStrangerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), strangerChildEnv+"="+string(js))
	var f *os.File
	if ln != nil {
		var err error
		f, err = ln.(*net.TCPListener).File()
		must(t, err)
		ln.Close()
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f}
	}
	c := &strangerChild{cmd: cmd, lines: make(chan string, 100), stderr: new(lockedBuffer), done: make(chan error, 1)}
	cmd.Stderr = c.stderr
	var err error
	c.stdin, err = cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			select {
			case c.lines <- s.Text():
			default: // a stat line nobody reads
			}
		}
		close(c.lines)
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
		c.done <- nil
	})
	c.expect(t, "ready", 20*time.Second)
	return c
}

// expect returns the child's latest line starting with prefix, waiting
// for one if none came since the last call; it skips other lines.
func (c *strangerChild) expect(t *testing.T, prefix string, wait time.Duration) string {
	t.Helper()
	last := ""
drain:
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				break drain
			}
			if strings.HasPrefix(l, prefix) {
				last = l
			}
		default:
			break drain
		}
	}
	if last != "" {
		return last
	}
	deadline := time.After(wait)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before %q:\n%s", prefix, c.stderr.String())
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %q from the child within %v:\n%s", prefix, wait, c.stderr.String())
		}
	}
}

// strangerKinds are the kinds of stranger, in turn (see stranger).
var strangerKinds = []string{"refused", "idle", "slowloris", "garbage"}

// rest returns the child's lines up to its exit.
func (c *strangerChild) rest(t *testing.T, wait time.Duration) []string {
	t.Helper()
	var lines []string
	deadline := time.After(wait)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return lines
			}
			lines = append(lines, l)
		case <-deadline:
			t.Fatalf("child still running %v after it was told to stop:\n%s", wait, c.stderr.String())
		}
	}
}

// strangerStats counts what the strangers of one kind did.
type strangerStats struct {
	kind      string
	conns     atomic.Int64 // connections opened
	dialFails atomic.Int64
	closed    atomic.Int64 // connections the node closed
	maxLife   atomic.Int64 // the longest a connection of theirs stayed open, ns
}

func (s *strangerStats) lived(d time.Duration) {
	s.closed.Add(1)
	for {
		m := s.maxLife.Load()
		if int64(d) <= m || s.maxLife.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (s *strangerStats) String() string {
	return fmt.Sprintf("%s: %d connections (%d dials failed), %d closed by the node, longest open %v",
		s.kind, s.conns.Load(), s.dialFails.Load(), s.closed.Load(), time.Duration(s.maxLife.Load()).Round(time.Millisecond))
}

// stranger connects to addr again and again until ctx ends, doing what
// kind says on each connection:
//   - refused: a forged handshake, then reads until the node closes;
//   - idle: sends nothing, reads until the node closes;
//   - slowloris: sends a request a byte a second;
//   - garbage: sends random bytes, then reads until the node closes.
func stranger(ctx context.Context, addr string, i int, st *strangerStats, to, from, hostsHash string) {
	d := net.Dialer{Timeout: time.Second}
	pause := func(p time.Duration) bool {
		t := time.NewTimer(p)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			st.dialFails.Add(1)
			pause(50 * time.Millisecond)
			continue
		}
		st.conns.Add(1)
		stop := context.AfterFunc(ctx, func() { c.Close() })
		opened := time.Now()
		closedByNode := false
		switch st.kind {
		case "refused":
			c.Write(forgedRequest(i, to, from, hostsHash))
			_, closedByNode = readClose(c, time.Minute)
		case "idle":
			_, closedByNode = readClose(c, time.Minute)
		case "slowloris":
			line := []byte("GET " + DefaultRoutePath + " HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			for k := 0; ctx.Err() == nil; k++ {
				if _, err := c.Write(line[k%len(line) : k%len(line)+1]); err != nil {
					closedByNode = true
					break
				}
				if _, closed := readClose(c, time.Second); closed {
					closedByNode = true
					break
				}
			}
		case "garbage":
			junk := make([]byte, 256)
			rand.Read(junk)
			c.Write(junk)
			_, closedByNode = readClose(c, time.Minute)
		}
		stop()
		c.Close()
		if closedByNode && ctx.Err() == nil {
			st.lived(time.Since(opened))
		}
		pause(time.Duration(5+i%10) * time.Millisecond)
	}
}

// TestStrangersCannotExhaustNode runs a node in a child process limited
// to strangerFileLimit open files, and points 2,000 strangers at its port
// (a quarter each refused handshakes, silent connections, slowloris and
// garbage, each reconnecting as soon as it is closed). Meanwhile a real
// peer keeps calling the node, then restarts (a new Manager, new
// instance, same address) and must be back within reconnectBound,
// calling again. The node must never run out of files. All traffic is
// on loopback; the test stops itself in well under a minute.
func TestStrangersCannotExhaustNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	lns, names := listen(t, 2)
	peer, node := names[0], names[1]
	peerLn, nodeLn := lns[0], lns[1]
	if !ShouldDial(peer, node) { // the peer must dial the attacked port
		peer, node, peerLn, nodeLn = node, peer, nodeLn, peerLn
	}
	peerAddr := peerLn.Addr().String()
	child := startStrangerChild(t, ctx, strangerSpec{Role: "node", Local: node, Hosts: names}, nodeLn)

	peerLog := newLogRecorder()
	startPeer := func(ln net.Listener) *Node {
		o := baseOptions(peer, names)
		o.HandshakeTimeout = strangerHandshake
		o.Logger = slog.New(peerLog)
		n, err := StartNode(context.Background(), ln, o)
		must(t, err)
		t.Cleanup(func() { n.Close() })
		return n
	}
	var cur atomic.Pointer[Node]
	cur.Store(startPeer(peerLn))
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	must(t, cur.Load().Manager.WaitForConnect(wctx))
	wcancel()
	must(t, callWho(ctx, cur.Load().Manager, node, "before"))

	attack := startStrangerChild(t, ctx, strangerSpec{Role: "strangers", Local: node, Peer: peer, Hosts: names}, nil)

	// The peer calls the node throughout, but while it restarts.
	var (
		calls, failed atomic.Int64
		slowest       atomic.Int64 // ns
		firstErr      atomic.Value
		paused        atomic.Bool
		cwg           sync.WaitGroup
	)
	cctx, stopCalls := context.WithCancel(ctx)
	cwg.Go(func() {
		for k := 0; cctx.Err() == nil; k++ {
			if !paused.Load() {
				rctx, rcancel := context.WithTimeout(cctx, 5*time.Second)
				start := time.Now()
				err := callWho(rctx, cur.Load().Manager, node, fmt.Sprint(k))
				took := int64(time.Since(start))
				rcancel()
				switch {
				case err == nil:
					calls.Add(1)
					if took > slowest.Load() {
						slowest.Store(took) // only this goroutine writes
					}
				case cctx.Err() == nil && !paused.Load():
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	defer func() {
		stopCalls()
		cwg.Wait()
	}()

	time.Sleep(3 * strangerHandshake / 2) // the strangers hold what they can
	t.Logf("under attack: %s", child.expect(t, "stat", 5*time.Second))
	callsBefore := calls.Load()

	// The peer restarts while the strangers hold their connections.
	paused.Store(true)
	must(t, cur.Load().Close())
	ln, err := net.Listen("tcp", peerAddr)
	must(t, err)
	restart := time.Now()
	cur.Store(startPeer(ln))
	var back time.Duration
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		err := callWho(rctx, cur.Load().Manager, node, "back")
		rcancel()
		if err == nil {
			back = time.Since(restart)
			break
		}
		if time.Since(restart) > reconnectBound {
			t.Fatalf("restarted peer not back within %v: %v\npeer's log:\n%s", reconnectBound, err, peerLog)
		}
		time.Sleep(10 * time.Millisecond)
	}
	paused.Store(false)
	t.Logf("restarted peer back after %v (bound %v)", back.Round(time.Millisecond), reconnectBound)

	time.Sleep(3 * strangerHandshake / 2)
	stopCalls()
	cwg.Wait()
	t.Logf("under attack: %s", child.expect(t, "stat", 5*time.Second))
	attack.stdin.Close()
	for _, l := range attack.rest(t, 10*time.Second) {
		if k, ok := strings.CutPrefix(l, "kind "); ok {
			t.Logf("strangers of %s", k)
		}
	}
	if err := <-attack.done; err != nil {
		t.Errorf("strangers' process: %v\n%s", err, clip(attack.stderr.String(), 4000))
	}
	attack.done <- nil
	t.Logf("peer's calls: %d answered (%d before the restart), slowest %v; %d failed",
		calls.Load(), callsBefore, time.Duration(slowest.Load()).Round(time.Millisecond), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d calls failed under attack, first: %v", failed.Load(), firstErr.Load())
	}
	if calls.Load() == callsBefore || callsBefore == 0 {
		t.Errorf("the peer made %d calls before its restart and %d after, want some in both", callsBefore, calls.Load()-callsBefore)
	}
	must(t, callWho(ctx, cur.Load().Manager, node, "after"))

	child.stdin.Close()
	done := child.expect(t, "done", 10*time.Second)
	t.Logf("node: %s", done)
	var files, maxFiles int
	if _, err := fmt.Sscanf(done, "done files=%d max_files=%d", &files, &maxFiles); err != nil || maxFiles >= strangerFileLimit {
		t.Errorf("the node held up to %d files (%v), want fewer than its limit, %d", maxFiles, err, strangerFileLimit)
	}
	select {
	case err := <-child.done:
		if err != nil {
			t.Errorf("node's process: %v\n%s", err, clip(child.stderr.String(), 4000))
		}
		child.done <- nil
	case <-time.After(10 * time.Second):
		t.Error("child did not exit")
	}
	if out := child.stderr.String(); strings.Contains(out, "too many open files") {
		t.Errorf("the node ran out of files:\n%s", clip(out, 4000))
	}
}
