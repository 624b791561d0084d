package grid

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/testutil"
	"github.com/gridmesh/gridmesh/mux"
)

// exposition registers c alone and returns what a scrape of it reads.
func exposition(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	must(t, reg.Register(c))
	fams, err := reg.Gather()
	must(t, err)
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		must(t, enc.Encode(f))
	}
	return b.String()
}

// TestMetricsTwoNodes: by default a Manager's Collector has the per
// handler series of both sides and the per-peer RTT histogram and
// reconnects, promtool-clean; DisableMetrics leaves it empty.
func TestMetricsTwoNodes(t *testing.T) {
	lns, names := listen(t, 2)
	a := startNode(t, lns[0], baseOptions(names[0], names))
	b := startNode(t, lns[1], baseOptions(names[1], names))
	ctx := testCtx(t)
	conn := a.m.Connection(names[1])
	must(t, conn.WaitForConnect(ctx))
	for range 5 {
		_, err := conn.Request(ctx, hWho, []byte("x"))
		must(t, err)
	}
	// A ping (every PingInterval, 1 s here) fills the RTT histogram.
	waitFor(t, "a ping", func() bool { return conn.Stats().LastRTT > 0 })
	text := exposition(t, a.m.Collector())
	for _, want := range []string{
		`gridmesh_rpc_calls_total{handler="grid-who",handler_id="101",side="client"} 5`,
		`gridmesh_rpc_duration_seconds_count{handler="grid-who",handler_id="101",side="client"} 5`,
		`gridmesh_peer_ping_rtt_seconds_bucket{peer="` + names[1] + `",le="+Inf"} `,
		`gridmesh_peer_reconnects_total{peer="` + names[1] + `"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("node a's metrics lack %q:\n%s", want, text)
		}
	}
	if want := `gridmesh_rpc_calls_total{handler="grid-who",handler_id="101",side="server"} 5`; !strings.Contains(exposition(t, b.m.Collector()), want) {
		t.Errorf("node b's metrics lack %q", want)
	}
	testutil.CheckPromtool(t, text)
	t.Logf("node a:\n%s", text)

	lns, names = listen(t, 2)
	off := baseOptions(names[0], names)
	off.DisableMetrics = true
	c := startNode(t, lns[0], off)
	if text := exposition(t, c.m.Collector()); text != "" {
		t.Errorf("DisableMetrics: the Collector collects\n%s", text)
	}
}

// TestMetricsAllocs: the default metrics add no allocation to a grid
// request (compared with DisableMetrics).
func TestMetricsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	allocs := func(disable bool) float64 {
		lns, names := listen(t, 2)
		o := baseOptions(names[0], names)
		o.DisableMetrics = disable
		a := startNode(t, lns[0], o)
		o = baseOptions(names[1], names)
		o.DisableMetrics = disable
		startNode(t, lns[1], o)
		conn := a.m.Connection(names[1])
		must(t, conn.WaitForConnect(testCtx(t)))
		ctx := context.Background()
		payload := make([]byte, 512)
		call := func() {
			resp, err := conn.Request(ctx, hWho, payload)
			if err != nil {
				t.Fatal(err)
			}
			mux.Recycle(resp)
		}
		for range 200 {
			call()
		}
		return testing.AllocsPerRun(500, call)
	}
	off, on := allocs(true), allocs(false)
	t.Logf("allocations per request: %.2f without metrics, %.2f with", off, on)
	if on > off+0.1 {
		t.Fatalf("the metrics add %.2f allocations per request", on-off)
	}
}

// TestStreamMetricsAllocs: the default metrics add no allocation and no
// goroutine to a stream (compared with DisableMetrics), counted on both
// sides; the caller's active-streams gauge is down as soon as the
// stream's Responses closed.
func TestStreamMetricsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	allocs := func(disable bool) float64 {
		lns, names := listen(t, 2)
		var nodes []*node
		for i := range 2 {
			o := baseOptions(names[i], names)
			o.DisableMetrics = disable
			nodes = append(nodes, startNode(t, lns[i], o))
		}
		streamHandler(t, hsOnce, serveOnce, nodes...)
		conn := nodes[0].m.Connection(names[1])
		must(t, conn.WaitForConnect(testCtx(t)))
		ctx := context.Background()
		open := func() {
			st, err := conn.NewStream(ctx, hsOnce, nil)
			if err != nil {
				t.Fatal(err)
			}
			for r := range st.Responses {
				mux.Recycle(r.Msg)
			}
		}
		for range 100 {
			open()
		}
		n := testing.AllocsPerRun(300, open)
		if !disable {
			want := `gridmesh_rpc_streams_active{handler="grid-stream-once",handler_id="170",side="client"} 0`
			if text := exposition(t, nodes[0].m.Collector()); !strings.Contains(text, want) {
				t.Errorf("right after the streams: no %s in\n%s", want, text)
			}
		}
		return n
	}
	off, on := allocs(true), allocs(false)
	t.Logf("allocations per stream: %.2f without metrics, %.2f with", off, on)
	if on > off+0.3 {
		t.Fatalf("the metrics add %.2f allocations per stream", on-off)
	}
}

// countingObserver counts what a mux.RequestObserver is told.
type countingObserver struct{ begun, done atomic.Int64 }

func (c *countingObserver) RequestBegun(handlers.HandlerID, bool) { c.begun.Add(1) }
func (c *countingObserver) RequestDone(handlers.HandlerID, bool, time.Duration, error) {
	c.done.Add(1)
}

// TestUserObserverBesideMetrics: an observer set in Options.Mux is told of
// every request as the grid's metrics are, with the metrics on or off.
func TestUserObserverBesideMetrics(t *testing.T) {
	for _, disable := range []bool{false, true} {
		lns, names := listen(t, 2)
		var obs [2]countingObserver
		var nodes [2]*node
		for i := range 2 {
			o := baseOptions(names[i], names)
			o.DisableMetrics = disable
			o.Mux.Observer = &obs[i]
			nodes[i] = startNode(t, lns[i], o)
		}
		ctx := testCtx(t)
		conn := nodes[0].m.Connection(names[1])
		must(t, conn.WaitForConnect(ctx))
		for range 3 {
			_, err := conn.Request(ctx, hWho, []byte("x"))
			must(t, err)
		}
		for i := range obs {
			if b, d := obs[i].begun.Load(), obs[i].done.Load(); b != 3 || d != 3 {
				t.Errorf("DisableMetrics %v: node %d's observer told of %d begun, %d done; want 3, 3", disable, i, b, d)
			}
		}
		want := `gridmesh_rpc_duration_seconds_count{handler="grid-who",handler_id="101",side="client"} 3`
		if text := exposition(t, nodes[0].m.Collector()); strings.Contains(text, want) == disable {
			t.Errorf("DisableMetrics %v: the metrics read\n%s", disable, text)
		}
	}
}
