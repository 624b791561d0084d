package grid

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingHandler remembers the handshake headers of every request.
type recordingHandler struct {
	next http.Handler
	mu   sync.Mutex
	seen []http.Header
}

func (h *recordingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Header.Clone())
	h.mu.Unlock()
	h.next.ServeHTTP(w, r)
}

func (h *recordingHandler) from(name string) []http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []http.Header
	for _, hd := range h.seen {
		if hd.Get(headerFrom) == name {
			out = append(out, hd)
		}
	}
	return out
}

// rawUpgrade sends a WebSocket upgrade request with hdr to a node and
// returns the status and body of the answer.
func rawUpgrade(t *testing.T, host string, hdr http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, strings.Replace(host, "http", "http", 1)+DefaultRoutePath, nil)
	must(t, err)
	req.Header = hdr.Clone()
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, ""
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// TestHandshakeRejections points misconfigured or forged dialers at a node
// and checks that each is refused with its reason, logged once on each
// side, and that the right peer still connects afterwards.
func TestHandshakeRejections(t *testing.T) {
	lns, names := listen(t, 2)
	dName, aName := names[0], names[1]
	dLn, aLn := lns[0], lns[1]
	if !ShouldDial(dName, aName) {
		dName, aName, dLn, aLn = aName, dName, aLn, dLn
	}
	// The acceptor runs behind a recorder; the real dialer starts later.
	aOpts := baseOptions(aName, names)
	acc := startNode(t, aLn, aOpts)
	rec := &recordingHandler{next: acc.m.Handler()}
	acc.srv.Handler.(*http.ServeMux).Handle("/rec"+DefaultRoutePath, rec)

	// Impostors dial through the recorder path, as real Managers.
	impostor := func(t *testing.T, o Options, wantStatus int, wantReason string) {
		t.Helper()
		o.RoutePath = "/rec" + DefaultRoutePath
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		before := len(rec.from(o.Local))
		imp := startNode(t, ln, o)
		c := imp.m.Connection(aName)
		waitFor(t, "three refusals", func() bool { return len(rec.from(o.Local)) >= before+3 })
		st := c.Stats()
		want := fmt.Sprintf("(HTTP %d): %s", wantStatus, wantReason)
		if st.State != StateConnecting || !strings.Contains(st.LastError, want) {
			t.Fatalf("state %v, last error %q, want it to contain %q", st.State, st.LastError, want)
		}
		if n := imp.log.count("cannot connect", wantReason); n != 1 {
			t.Errorf("dialer logged the refusal %d times, want once:\n%s", n, imp.log)
		}
		imp.stop()
		if n := acc.log.count("handshake rejected", wantReason); n != 1 {
			t.Errorf("acceptor logged the refusal %d times, want once:\n%s", n, acc.log)
		}
	}

	t.Run("wrong secret", func(t *testing.T) {
		o := baseOptions(dName, names)
		o.Secret = []byte("not the secret")
		impostor(t, o, 401, "authentication failed")
	})
	t.Run("skewed clock", func(t *testing.T) {
		o := baseOptions(dName, names)
		o.Now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
		impostor(t, o, 401, "clock skew")
	})
	t.Run("unknown host", func(t *testing.T) {
		stranger := "http://127.0.0.0:1"
		for port := 2; !ShouldDial(stranger, aName); port++ { // the stranger must be the dialer
			stranger = fmt.Sprintf("http://127.0.0.0:%d", port)
		}
		hosts := []string{stranger, aName}
		impostor(t, baseOptions(stranger, hosts), 403, "unknown host")
	})

	// The real dialer connects, through the recorder.
	dOpts := baseOptions(dName, names)
	dOpts.RoutePath = "/rec" + DefaultRoutePath
	dial := startNode(t, dLn, dOpts)
	ctx := testCtx(t)
	must(t, dial.m.WaitForConnect(ctx))
	must(t, dial.call(ctx, aName, "ok"))
	must(t, acc.call(ctx, dName, "ok"))

	t.Run("replayed handshake", func(t *testing.T) {
		hs := rec.from(dName)
		good := hs[len(hs)-1] // the one that connected
		status, body := rawUpgrade(t, aName, good)
		if status != 401 || !strings.Contains(body, "replayed handshake") {
			t.Fatalf("replay: %d %q", status, body)
		}
	})
	t.Run("wrong dial side", func(t *testing.T) {
		// A correctly signed dial from the node that must accept.
		h := handshake{from: aName, to: dName, millis: time.Now().UnixMilli(), nonce: newID(), instance: newID(), hosts: acc.m.currentHash()}
		hdr, err := h.header(HMACAuthenticator(testSecret))
		must(t, err)
		status, body := rawUpgrade(t, dName, hdr)
		if status != 409 || !strings.Contains(body, "wrong dial side") {
			t.Fatalf("wrong side: %d %q", status, body)
		}
	})
	t.Run("wrong node", func(t *testing.T) {
		h := handshake{from: dName, to: "http://elsewhere:1", millis: time.Now().UnixMilli(), nonce: newID(), instance: newID(), hosts: acc.m.currentHash()}
		hdr, _ := h.header(HMACAuthenticator(testSecret))
		if status, body := rawUpgrade(t, aName, hdr); status != 403 || !strings.Contains(body, "wrong node") {
			t.Fatalf("wrong node: %d %q", status, body)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		hdr := http.Header{}
		hdr.Set(headerFrom, dName)
		hdr.Set(headerTo, aName)
		hdr.Set(headerHosts, "x")
		hdr.Set(headerNonce, strings.Repeat("zz", nonceLen))
		if status, body := rawUpgrade(t, aName, hdr); status != 400 || !strings.Contains(body, "bad handshake") {
			t.Fatalf("garbage: %d %q", status, body)
		}
	})

	// The real pair is still up and still serves.
	must(t, dial.call(ctx, aName, "still"))
	if st := acc.m.Connection(dName).Stats(); st.Connects != 1 {
		t.Fatalf("acceptor saw %d connects, want 1", st.Connects)
	}
}

// TestAcceptorAuthenticated: a dialer refuses an acceptor that cannot
// prove the shared secret.
func TestAcceptorAuthenticated(t *testing.T) {
	lns, names := listen(t, 2)
	dName, aName := names[0], names[1]
	dLn, aLn := lns[0], lns[1]
	if !ShouldDial(dName, aName) {
		dName, aName, dLn, aLn = aName, dName, aLn, dLn
	}
	// The acceptor verifies nothing and signs with the wrong key.
	ao := baseOptions(aName, names)
	ao.Authenticator = lenientAuth{HMACAuthenticator([]byte("wrong"))}
	startNode(t, aLn, ao)
	d := startNode(t, dLn, baseOptions(dName, names))
	waitFor(t, "the dialer to refuse", func() bool {
		return strings.Contains(d.m.Connection(aName).Stats().LastError, "authentication failed")
	})
	if d.m.Connection(aName).State() != StateConnecting {
		t.Fatal("dialer connected to an unauthenticated acceptor")
	}
}

// lenientAuth signs with its Authenticator and accepts any proof.
type lenientAuth struct{ Authenticator }

func (lenientAuth) Verify(string, []byte, []byte) error { return nil }

func TestReplayCacheBounded(t *testing.T) {
	c := newReplayCache(2)
	now := time.Now()
	for i, want := range []int{0, 0, 503} {
		rej := c.add(fmt.Sprint(i), now, now.Add(time.Minute))
		if (rej == nil) != (want == 0) || (rej != nil && rej.status != want) {
			t.Fatalf("add %d: %v", i, rej)
		}
	}
	if rej := c.add("0", now, now.Add(time.Minute)); rej == nil || rej.status != 401 {
		t.Fatalf("replay: %v", rej)
	}
	later := now.Add(2 * time.Minute)
	if rej := c.add("0", later, later.Add(time.Minute)); rej != nil {
		t.Fatalf("after expiry: %v", rej)
	}
	if len(c.seen) != 1 || len(c.order) != 1 {
		t.Fatalf("not pruned: %d %d", len(c.seen), len(c.order))
	}
}

// TestRejectionLogBounded: a dialer that sends a new unknown name with
// every attempt (nothing of a rejected handshake is verified) gets one
// warning per kind of rejection, not one per name, and the names it sends
// are clipped; a rejected peer from the host list is still logged.
func TestRejectionLogBounded(t *testing.T) {
	lns, names := listen(t, 2)
	a := startNode(t, lns[0], baseOptions(names[0], names))
	forged := func(from string) http.Header {
		hdr := http.Header{}
		hdr.Set(headerFrom, from)
		hdr.Set(headerTo, names[0])
		hdr.Set(headerHosts, "h")
		hdr.Set(headerNonce, strings.Repeat("0", 2*nonceLen))
		hdr.Set(headerInstance, strings.Repeat("0", 2*nonceLen))
		hdr.Set(headerTime, "0")
		return hdr
	}
	for i := range 50 {
		status, body := rawUpgrade(t, names[0], forged(fmt.Sprintf("http://stranger-%d-%s", i, strings.Repeat("x", 600))))
		if status != http.StatusForbidden || !strings.Contains(body, "unknown host") {
			t.Fatalf("forged dial %d: %d %q", i, status, body)
		}
	}
	if n := a.log.count("handshake rejected"); n != 1 {
		t.Fatalf("50 dials from unknown names logged %d warnings, want 1:\n%s", n, a.log)
	}
	if line := a.log.String(); strings.Contains(line, strings.Repeat("x", 300)) {
		t.Fatalf("the forged name is not clipped in the log:\n%s", line)
	}
	// names[1] is in the host list: its rejection (a stale clock here) is
	// its own line.
	status, _ := rawUpgrade(t, names[0], forged(names[1]))
	if status != http.StatusUnauthorized {
		t.Fatalf("forged dial from a listed host: %d", status)
	}
	if n := a.log.count("handshake rejected", names[1]); n != 1 {
		t.Fatalf("rejection of a listed host logged %d times, want 1:\n%s", n, a.log)
	}
}
