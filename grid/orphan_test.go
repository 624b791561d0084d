package grid

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

var (
	hStuck  = handlers.New(141, "grid-stuck")        // ignores its context until the test releases it
	hsStuck = handlers.New(142, "grid-stream-stuck") // the same, as a stream handler
)

// stuck is a handler that ignores its context: it returns only when the
// test releases it.
type stuck struct {
	started  chan struct{}
	release  chan struct{}
	returned sync.WaitGroup
	once     sync.Once
}

func newStuck(n int) *stuck {
	s := &stuck{started: make(chan struct{}, n), release: make(chan struct{})}
	s.returned.Add(n)
	return s
}

func (s *stuck) single(context.Context, []byte) ([]byte, error) {
	defer s.returned.Done()
	s.started <- struct{}{}
	<-s.release
	return []byte("late answer"), nil
}

func (s *stuck) stream(context.Context, []byte, <-chan []byte, chan<- []byte) error {
	defer s.returned.Done()
	s.started <- struct{}{}
	<-s.release
	return nil
}

func (s *stuck) free() { s.once.Do(func() { close(s.release) }) }

// scrape returns n's metrics for peer, by family name.
func scrape(t *testing.T, n *node, peer string) map[string]string {
	t.Helper()
	rec := httptest.NewRecorder()
	n.m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DefaultMetricsPath, nil))
	label := `{peer="` + peer + `"}`
	out := map[string]string{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasSuffix(f[0], label) {
			out[strings.TrimSuffix(f[0], label)] = f[1]
		}
	}
	return out
}

// TestStuckHandlerDoesNotHoldLinkDown: on the dialing side, a handler and
// a stream handler ignore their context and never return. The session is
// lost; the connection comes back at once all the same, while both are
// still stuck, and they show in OrphanedHandlers (and the metric
// gridmesh_peer_handlers_orphaned) rather than as running. When they
// finally return, their answers are dropped: the caller has long had
// ErrDisconnected, and the new session carries nothing of them.
func TestStuckHandlerDoesNotHoldLinkDown(t *testing.T) {
	d, a, _ := pair(t, nil)
	h := newStuck(2)
	t.Cleanup(h.free) // before the nodes stop: their Close waits for handlers
	must(t, d.m.RegisterSingleHandler(hStuck, h.single))
	must(t, d.m.RegisterStreamHandler(hsStuck, handlers.StreamHandler{Handle: h.stream}))
	dc, ac := d.m.Connection(a.name), a.m.Connection(d.name)
	ctx := testCtx(t)

	errc := make(chan error, 1)
	go func() {
		_, err := ac.Request(ctx, hStuck, nil)
		errc <- err
	}()
	st, err := ac.NewStream(ctx, hsStuck, nil)
	must(t, err)
	for range 2 {
		<-h.started
	}
	if got := dc.Stats(); got.Running != 1 || got.StreamsIn != 1 || got.OrphanedHandlers != 0 {
		t.Fatalf("before the loss: running %d, streams in %d, orphaned %d", got.Running, got.StreamsIn, got.OrphanedHandlers)
	}

	lost := time.Now()
	if d.dialer.killAll() == 0 {
		t.Fatal("no connection to kill")
	}
	failsFast(t, "the call to the stuck handler", errc)
	if r := recvResp(t, st); !isDisconnected(r.Err) {
		t.Fatalf("the stream to the stuck handler: %+v, want ErrDisconnected", r)
	}

	// Back up while the handlers are stuck: the redial did not wait.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s := dc.Stats(); s.Connects >= 2 && s.State == StateConnected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the connection is still down %v after the loss, held by a stuck handler: %+v", time.Since(lost), dc.Stats())
		}
		time.Sleep(2 * time.Millisecond)
	}
	back := time.Since(lost)
	must(t, d.call(ctx, a.name, "after"))
	must(t, a.call(ctx, d.name, "after"))
	t.Logf("the connection was back %v after the loss, with 2 handlers stuck", back.Round(time.Millisecond))

	got := dc.Stats()
	if got.OrphanedHandlers != 2 || got.Running != 0 || got.StreamsIn != 0 || got.Unanswered != 0 {
		t.Errorf("with the handlers stuck: orphaned %d, running %d, streams in %d, unanswered %d; want 2, 0, 0, 0",
			got.OrphanedHandlers, got.Running, got.StreamsIn, got.Unanswered)
	}
	m := scrape(t, d, a.name)
	if m["gridmesh_peer_handlers_orphaned"] != "2" || m["gridmesh_peer_handlers_running"] != "0" || m["gridmesh_peer_up"] != "1" {
		t.Errorf("metrics: orphaned %q, running %q, up %q; want 2, 0, 1",
			m["gridmesh_peer_handlers_orphaned"], m["gridmesh_peer_handlers_running"], m["gridmesh_peer_up"])
	}

	// Released, they return; their answers have nowhere to go.
	aBefore := ac.Stats()
	h.free()
	h.returned.Wait()
	waitFor(t, "no orphaned handler", func() bool { return dc.Stats().OrphanedHandlers == 0 })
	after := dc.Stats()
	if after.Served < got.Served+1 {
		t.Errorf("served %d after the stuck handler returned, want at least %d: counters must survive the session", after.Served, got.Served+1)
	}
	must(t, a.call(ctx, d.name, "later"))
	aAfter := ac.Stats()
	if aAfter.Connects != aBefore.Connects || aAfter.RemoteErrors != aBefore.RemoteErrors || aAfter.State != StateConnected {
		t.Errorf("the late answers reached the peer's new session: before %+v, after %+v", aBefore, aAfter)
	}
	if m := scrape(t, d, a.name); m["gridmesh_peer_handlers_orphaned"] != "0" {
		t.Errorf("gridmesh_peer_handlers_orphaned %q after the handlers returned", m["gridmesh_peer_handlers_orphaned"])
	}
}
