package grid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

var (
	hWho   = handlers.New(101, "grid-who")   // answers "<local>:<payload>"
	hBlock = handlers.New(102, "grid-block") // waits for its context
)

var testSecret = []byte("grid test secret")

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// listen opens n loopback listeners and returns them with their host names.
func listen(tb testing.TB, n int) ([]net.Listener, []string) {
	tb.Helper()
	lns := make([]net.Listener, n)
	names := make([]string, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns[i], names[i] = ln, "http://"+ln.Addr().String()
	}
	return lns, names
}

// node is a Manager served over HTTP on its own listener.
type node struct {
	tb     testing.TB
	name   string
	m      *Manager
	srv    *http.Server
	served chan struct{} // closed when Serve returned
	log    *logRecorder
	dialer *tracker
	once   sync.Once
}

// baseOptions are fast settings for tests. PingTimeout is 3 s, as in
// internal/testcluster: under -race on a loaded machine a pong can be a
// second late, and many tests count sessions exactly. A test whose point
// is how fast a dead peer is found, or whose expectations name the
// timeout, sets its own.
func baseOptions(local string, hosts []string) Options {
	return Options{
		Local: local, Hosts: hosts, Secret: testSecret,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		HealthyAfter: 100 * time.Millisecond,
		PingInterval: time.Second, PingTimeout: 3 * time.Second,
	}
}

// startNode starts a Manager with opts (Logger and NetDial set here unless
// given) serving on ln, with the test handlers registered.
func startNode(tb testing.TB, ln net.Listener, opts Options) *node {
	tb.Helper()
	n := &node{tb: tb, name: opts.Local, log: newLogRecorder(), dialer: newTracker(opts.NetDial), served: make(chan struct{})}
	if opts.Logger == nil {
		opts.Logger = slog.New(n.log)
	}
	opts.NetDial = n.dialer.dial
	m, err := NewManager(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	n.m = m
	must(tb, m.RegisterSingleHandler(hWho, func(_ context.Context, p []byte) ([]byte, error) {
		return []byte(opts.Local + ":" + string(p)), nil
	}))
	must(tb, m.RegisterSingleHandler(hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	mux := http.NewServeMux()
	mux.Handle(DefaultRoutePath, m.Handler())
	n.srv = &http.Server{Handler: mux}
	go func() {
		defer close(n.served)
		n.srv.Serve(ln)
	}()
	tb.Cleanup(n.stop)
	return n
}

// stop closes the Manager and its server and waits for both.
func (n *node) stop() {
	n.once.Do(func() {
		must(n.tb, n.m.Close())
		n.srv.Close()
		<-n.served
	})
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// call makes a hWho request from n to peer and checks the answer.
func (n *node) call(ctx context.Context, peer, payload string) error {
	c := n.m.Connection(peer)
	if c == nil {
		return fmt.Errorf("%s has no connection to %s", n.name, peer)
	}
	out, err := c.Request(ctx, hWho, []byte(payload))
	if err != nil {
		return err
	}
	if want := peer + ":" + payload; string(out) != want {
		return fmt.Errorf("%s→%s: got %q, want %q", n.name, peer, out, want)
	}
	return nil
}

// tracker wraps a dial function and remembers the connections it made, so
// a test can cut them.
type tracker struct {
	next  func(ctx context.Context, network, addr string) (net.Conn, error)
	mu    sync.Mutex
	conns []net.Conn
}

func newTracker(next func(ctx context.Context, network, addr string) (net.Conn, error)) *tracker {
	if next == nil {
		next = (&net.Dialer{}).DialContext
	}
	return &tracker{next: next}
}

func (t *tracker) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := t.next(ctx, network, addr)
	if err == nil {
		t.mu.Lock()
		t.conns = append(t.conns, c)
		t.mu.Unlock()
	}
	return c, err
}

// killAll closes every connection dialed so far and returns how many.
func (t *tracker) killAll() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		c.Close()
	}
	n := len(t.conns)
	t.conns = nil
	return n
}

// logRecorder is a slog.Handler that keeps every record's message and
// attributes as one line.
type logRecorder struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), lines: new([]string)}
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range l.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	*l.lines = append(*l.lines, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(append([]slog.Attr(nil), l.attrs...), as...)
	return &c
}

func (l *logRecorder) WithGroup(string) slog.Handler { return l }

// count returns how many lines contain every one of subs.
func (l *logRecorder) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range *l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(*l.lines, "\n")
}

// isDisconnected reports whether err is the grid's disconnection error.
func isDisconnected(err error) bool { return errors.Is(err, ErrDisconnected) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func isInvalid(err error) bool { return errors.Is(err, ErrInvalidOptions) }

func isClosed(err error) bool { return errors.Is(err, ErrClosed) }
