package grid

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// refusedCloseWait is how long TestRefusedHandshakesClose waits for each
// refused connection to be closed. Raise it to measure code that keeps
// them open:
//
//	go test -run TestRefusedHandshakesClose -v ./grid -args -strangers.closewait=30s
var refusedCloseWait = flag.Duration("strangers.closewait", 5*time.Second, "how long TestRefusedHandshakesClose waits for each refused connection to close")

// refusalKinds is how many kinds of refused handshake forgedRequest writes.
const refusalKinds = 4

// forgedRequest returns a raw HTTP request that a node named to refuses,
// of one of refusalKinds kinds: a wrong proof (refused only after the
// proof is checked), an unknown sender, missing handshake headers, and a
// plain GET of the route. from must be in the node's host list and
// hostsHash its list's hash, for the proof to be what is refused.
func forgedRequest(kind int, to, from, hostsHash string) []byte {
	u, _ := parseHost(to)
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", DefaultRoutePath, u.Host)
	if kind%refusalKinds == 3 {
		b.WriteString("\r\n")
		return []byte(b.String())
	}
	b.WriteString("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
	h := handshake{from: from, to: to, millis: time.Now().UnixMilli(), nonce: newID(), instance: newID(), hosts: hostsHash}
	switch kind % refusalKinds {
	case 1:
		h.from = "http://stranger.invalid:1"
	case 2:
		h.nonce = "not hex"
	}
	proof := make([]byte, 32)
	rand.Read(proof)
	hdr, _ := h.header(nil)
	hdr.Set(headerProof, base64.RawURLEncoding.EncodeToString(proof))
	hdr.Write(&b)
	b.WriteString("\r\n")
	return []byte(b.String())
}

// refusedConn sends one forged handshake on a new connection to addr,
// reads the refusal, and returns the time from the refusal to the
// connection's close (or wait, if it was not closed by then) and whether
// it was closed. It calls done once the refusal is read, or on failure.
func refusedConn(ctx context.Context, addr string, req []byte, wait time.Duration, done func()) (time.Duration, bool, error) {
	var once sync.Once
	defer once.Do(done)
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return 0, false, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, fmt.Errorf("reading the refusal: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 {
		return 0, false, fmt.Errorf("forged handshake answered %s", resp.Status)
	}
	refused := time.Now()
	once.Do(done)
	c.SetReadDeadline(refused.Add(wait))
	_, err = br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return wait, false, nil
	}
	return time.Since(refused), true, nil
}

// TestRefusedHandshakesClose makes 2,000 refused handshakes on a node's
// port, at most 200 in flight at once, and checks that the node closes
// every connection right after its refusal, instead of keeping it open
// for the next request: a stranger must not hold the node's sockets by
// being refused. It logs how long the closes took.
func TestRefusedHandshakesClose(t *testing.T) {
	const conns, inFlight = 2000, 200
	lns, names := listen(t, 2)
	n, err := StartNode(context.Background(), lns[0], baseOptions(names[0], names))
	must(t, err)
	t.Cleanup(func() { n.Close() })
	lns[1].Close() // names[1] is only a name in the list
	addr := lns[0].Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout+*refusedCloseWait)
	defer cancel()

	var (
		mu       sync.Mutex
		times    []time.Duration
		open     int
		failures []string
	)
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		req := forgedRequest(i, names[0], names[1], n.Manager.hostsHash)
		sem <- struct{}{}
		wg.Go(func() {
			d, closed, err := refusedConn(ctx, addr, req, *refusedCloseWait, func() { <-sem })
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failures = append(failures, err.Error())
			case closed:
				times = append(times, d)
			default:
				open++
			}
		})
	}
	wg.Wait()
	total := time.Since(start)
	if len(failures) > 0 {
		t.Fatalf("%d of %d connections failed, first: %s", len(failures), conns, failures[0])
	}
	slices.Sort(times)
	pct := func(p int) time.Duration {
		if len(times) == 0 {
			return 0
		}
		return times[(len(times)-1)*p/100]
	}
	t.Logf("%d refused connections: %d closed by the node (after the refusal: p50 %v, p99 %v, max %v), %d still open after %v; all done in %v",
		conns, len(times), pct(50), pct(99), pct(100), open, *refusedCloseWait, total)
	if open > 0 {
		t.Fatalf("%d of %d refused connections still open %v after their refusal", open, conns, *refusedCloseWait)
	}
	if m := pct(100); m > 3*time.Second {
		t.Errorf("slowest close came %v after its refusal, want at once", m)
	}
}

// startTestNode starts a Node on ln with opts and the test handlers, and
// closes it when the test ends.
func startTestNode(t *testing.T, ln net.Listener, opts Options) *Node {
	t.Helper()
	n, err := StartNode(context.Background(), ln, opts)
	must(t, err)
	t.Cleanup(func() { n.Close() })
	must(t, n.Manager.RegisterSingleHandler(hWho, func(_ context.Context, p []byte) ([]byte, error) {
		return []byte(opts.Local + ":" + string(p)), nil
	}))
	return n
}

// callWho makes a hWho request from m to peer and checks the answer.
func callWho(ctx context.Context, m *Manager, peer, payload string) error {
	out, err := m.Connection(peer).Request(ctx, hWho, []byte(payload))
	if err != nil {
		return err
	}
	if want := peer + ":" + payload; string(out) != want {
		return fmt.Errorf("got %q, want %q", out, want)
	}
	return nil
}

// TestNodeTimeoutsSpareGridSessions gives two nodes' HTTP servers read,
// write and idle timeouts far shorter than their grid session lives, and
// checks that the session outlives them all: the upgrade must clear the
// deadlines the server set on the connection.
func TestNodeTimeoutsSpareGridSessions(t *testing.T) {
	const hs = 250 * time.Millisecond
	lns, names := listen(t, 2)
	nodes := make([]*Node, 2)
	for i := range nodes {
		o := baseOptions(names[i], names)
		o.HandshakeTimeout = hs
		o.PingInterval = 3 * hs     // quiet for longer than every timeout
		o.PingTimeout = testTimeout // a loaded machine's late pong is not the point
		nodes[i] = startTestNode(t, lns[i], o)
	}
	ctx := testCtx(t)
	for _, n := range nodes {
		must(t, n.Manager.WaitForConnect(ctx))
	}
	time.Sleep(8 * hs) // past the read, write and idle timeouts, several times
	for i, n := range nodes {
		peer := names[1-i]
		must(t, callWho(ctx, n.Manager, peer, "after the timeouts"))
		if st := n.Manager.Connection(peer).Stats(); st.Connects != 1 {
			t.Errorf("%s: %d sessions, want the first to have lasted (last error %q)", n.Manager.Local(), st.Connects, st.LastError)
		}
	}
}

// readClose reads c until it fails and returns how long that took and
// whether the node closed it (rather than the wait running out).
func readClose(c net.Conn, wait time.Duration) (time.Duration, bool) {
	start := time.Now()
	c.SetReadDeadline(start.Add(wait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return time.Since(start), !(errors.As(err, &ne) && ne.Timeout())
}

// TestNodeReapsSlowStrangers checks that a node closes, within its
// HandshakeTimeout, a connection that never sends, one that sends its
// request a byte at a time (slowloris), and one left idle after a request.
func TestNodeReapsSlowStrangers(t *testing.T) {
	const hs = 300 * time.Millisecond
	lns, names := listen(t, 2)
	o := baseOptions(names[0], names)
	o.HandshakeTimeout = hs
	n := startTestNode(t, lns[0], o)
	n.Handle(DefaultStatsPath, n.Manager.StatsHandler()) // a plain HTTP route beside the grid's
	lns[1].Close()
	addr := lns[0].Addr().String()
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		must(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	check := func(what string, d time.Duration, closed bool) {
		t.Helper()
		t.Logf("%s: closed by the node after %v", what, d)
		if !closed || d > hs+3*time.Second {
			t.Errorf("%s: still open after %v, want closed within %v", what, d, hs)
		}
	}

	silent := dial()
	d, closed := readClose(silent, 5*time.Second)
	check("silent connection", d, closed)

	slow := dial()
	start := time.Now()
	go func() {
		req := []byte("GET " + DefaultRoutePath + " HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		for i := 0; ; i++ {
			if _, err := slow.Write(req[i%len(req) : i%len(req)+1]); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	_, closed = readClose(slow, 5*time.Second)
	check("slowloris", time.Since(start), closed)

	idle := dial()
	fmt.Fprintf(idle, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", DefaultStatsPath)
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	must(t, err)
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("stats answered %s, close %v; want 200 kept alive", resp.Status, resp.Close)
	}
	d, closed = readClose(idle, 5*time.Second)
	check("idle keep-alive connection", d, closed)
}

// TestPendingConnsBound fills a node's MaxPendingConns with connections
// that send nothing, and checks that a new connection closes the oldest
// one not being answered (a request in progress is spared), that a peer
// still connects past them, and that its session leaves the count.
func TestPendingConnsBound(t *testing.T) {
	const max = 4
	lns, names := listen(t, 2)
	dName, aName := names[0], names[1]
	dLn, aLn := lns[0], lns[1]
	if !ShouldDial(dName, aName) {
		dName, aName, dLn, aLn = aName, dName, aLn, dLn
	}
	o := baseOptions(aName, names)
	o.MaxPendingConns = max
	acc := startTestNode(t, aLn, o)
	release := make(chan struct{})
	defer close(release)
	acc.Handle("/block", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	addr := aLn.Addr().String()
	pending := func(want int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d pending connections", want), func() bool { n, _ := acc.pending.counts(); return n == want })
	}

	var held []net.Conn
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		must(t, err)
		t.Cleanup(func() { c.Close() })
		held = append(held, c)
		return c
	}
	busy := dial() // the oldest, but being answered
	fmt.Fprintf(busy, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	pending(1)
	waitFor(t, "the request in progress", func() bool {
		acc.pending.mu.Lock()
		defer acc.pending.mu.Unlock()
		return acc.pending.head != nil && acc.pending.head.active
	})
	for len(held) < max {
		dial()
		pending(len(held))
	}
	dial() // one too many: held[1], the oldest idle one, must go
	if d, closed := readClose(held[1], 5*time.Second); !closed {
		t.Fatalf("the oldest idle connection is still open after %v", d)
	}
	pending(max)
	for _, c := range append([]net.Conn{busy}, held[2:]...) {
		if _, closed := readClose(c, 50*time.Millisecond); closed {
			t.Fatal("a connection other than the oldest idle one was closed")
		}
	}

	// A peer gets in past the connections held, and its session does not
	// count: the bound holds only handshakes.
	dOpts := baseOptions(dName, names)
	dial2 := startTestNode(t, dLn, dOpts)
	ctx := testCtx(t)
	must(t, dial2.Manager.WaitForConnect(ctx))
	must(t, callWho(ctx, dial2.Manager, aName, "past the strangers"))
	waitFor(t, "the session to leave the count", func() bool { n, _ := acc.pending.counts(); return n < max })
	if _, closed := acc.pending.counts(); closed < 2 {
		t.Errorf("%d connections closed to make room, want 2 (one for each dial of the peer)", closed)
	}
}

// slowAuth is an Authenticator whose Verify waits for release.
type slowAuth struct {
	Authenticator
	verifying chan struct{}
	release   chan struct{}
}

func (a slowAuth) Verify(peer string, msg, proof []byte) error {
	a.verifying <- struct{}{}
	<-a.release
	return a.Authenticator.Verify(peer, msg, proof)
}

// TestHandshakesBounded serves Manager.Handler on a plain http.Server and
// checks that past MaxPendingConns handshakes being checked, the next is
// refused 503 without being checked, and its connection closed.
func TestHandshakesBounded(t *testing.T) {
	lns, names := listen(t, 2)
	auth := slowAuth{HMACAuthenticator(testSecret), make(chan struct{}, 8), make(chan struct{})}
	o := baseOptions(names[0], names)
	o.Secret, o.Authenticator, o.MaxPendingConns = nil, auth, 1
	n := startNode(t, lns[0], o)
	lns[1].Close()
	addr := lns[0].Addr().String()
	ctx := testCtx(t)

	first := make(chan error, 1)
	go func() {
		_, closed, err := refusedConn(ctx, addr, forgedRequest(0, names[0], names[1], n.m.currentHash()), 5*time.Second, func() {})
		if err == nil && !closed {
			err = errors.New("still open after its refusal")
		}
		first <- err
	}()
	<-auth.verifying // the first handshake holds the only slot

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	must(t, err)
	defer c.Close()
	c.Write(forgedRequest(0, names[0], names[1], n.m.currentHash()))
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "too many handshakes") {
		t.Fatalf("second handshake answered %s %q, want 503 too many handshakes", resp.Status, body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the 503: %v, want the connection closed", err)
	}
	if len(auth.verifying) != 0 {
		t.Fatal("the refused handshake was checked")
	}
	close(auth.release)
	must(t, <-first)
}

// TestBadUpgradeCloses sends a correctly signed handshake that is not a
// WebSocket upgrade: the WebSocket library refuses it with a header of
// its own (Connection: Upgrade), and the node must still close the
// connection after the refusal.
func TestBadUpgradeCloses(t *testing.T) {
	lns, names := listen(t, 2)
	acc, dial := 0, 1
	if !ShouldDial(names[dial], names[acc]) {
		acc, dial = 1, 0
	}
	n := startTestNode(t, lns[acc], baseOptions(names[acc], names))
	lns[dial].Close()
	h := handshake{from: names[dial], to: names[acc], millis: time.Now().UnixMilli(), nonce: newID(), instance: newID(), hosts: n.Manager.hostsHash}
	hdr, err := h.header(HMACAuthenticator(testSecret))
	must(t, err)
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", DefaultRoutePath)
	hdr.Write(&req)
	req.WriteString("\r\n")
	d, closed, err := refusedConn(testCtx(t), lns[acc].Addr().String(), []byte(req.String()), 5*time.Second, func() {})
	must(t, err)
	if !closed {
		t.Fatalf("connection still open %v after the refused upgrade", d)
	}
}

// TestMaxPendingConnsDefault checks the default bound against the file
// limit, and that a negative bound is refused.
func TestMaxPendingConnsDefault(t *testing.T) {
	for _, c := range []struct {
		files uint64
		want  int
	}{{0, 1024}, {1 << 20, 1024}, {4096, 1024}, {4000, 1000}, {256, 64}, {20, 16}, {^uint64(0), 1024}} {
		if got := defaultMaxPendingConns(c.files); got != c.want {
			t.Errorf("file limit %d: default %d, want %d", c.files, got, c.want)
		}
	}
	h := []string{"http://a:1", "http://b:1"}
	_, err := NewManager(context.Background(), Options{Local: h[0], Hosts: h, Secret: testSecret, MaxPendingConns: -1})
	if !isInvalid(err) || !contains(err.Error(), "MaxPendingConns: negative") {
		t.Fatalf("negative MaxPendingConns: %v", err)
	}
}
