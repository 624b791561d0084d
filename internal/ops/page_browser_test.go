package ops_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testbrowser"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// pageMesh is a mesh as grid.MeshStats encodes it: a gateway (with its
// transaction latency), a worker with contract errors, and a worker that
// is down with an error holding markup, which must show as text.
const pageMesh = `{
  "from": "http://a:1", "time": "2026-01-01T00:00:00Z",
  "nodes": [
    {"host": "http://a:1", "self": true, "state": "connected", "up": true, "call_seconds": 0.0001,
     "stats": {"host": "http://a:1", "instance": "i1", "time": "2026-01-01T00:00:00Z", "ping_timeout_seconds": 3,
       "grid": {"local": "http://a:1", "connected": 1, "requests_out": 12, "peers": {
         "http://b:2": {"host": "http://b:2", "state": "connected", "last_rtt_seconds": 0.00042, "bytes_in": 100, "bytes_out": 200, "reconnects": 2},
         "http://c:3": {"host": "http://c:3", "state": "connecting", "last_error": "dial: refused"}}},
       "sections": {
         "gateway": {"connected": true, "received": 40, "sent": 38, "in_flight": 2, "journaled": 38,
           "tx_latency": {"count": 38, "p50": 0.0021, "p90": 0.0105, "p99": 0.25}},
         "dispatch": {"redispatched": 1, "workers": [
           {"host": "http://b:2", "up": true, "capacity": 4, "running": 3, "done": 30},
           {"host": "http://c:3", "up": false, "capacity": 4, "running": 0, "done": 8}]}}}},
    {"host": "http://b:2", "state": "connected", "up": true, "call_seconds": 0.002,
     "stats": {"host": "http://b:2", "instance": "i2", "time": "2026-01-01T00:00:00Z",
       "grid": {"local": "http://b:2", "connected": 1, "served": 30, "peers": {
         "http://a:1": {"host": "http://a:1", "state": "connected"},
         "http://c:3": {"host": "http://c:3", "state": "connecting"}}},
       "sections": {"worker": {"capacity": 4, "running": 3, "done": 30, "contract_errors": 7, "contract_timeouts": 1},
         "processes": {"processes": 2, "running": 2, "starts": 3}},
       "section_errors": {"slow": "no answer within 1.5s"}}},
    {"host": "http://c:3", "state": "connecting", "up": false, "call_seconds": 0,
     "error": "connecting: <img src=x onerror=\"window.pwned=1\">"}
  ]
}`

// TestPageRenders opens the status page in headless Chromium against a
// fixed mesh: the nodes, the matrix and the pipeline show what it holds,
// the transaction latency percentiles included, and what a node sent is
// text, never markup.
func TestPageRenders(t *testing.T) {
	browser := testbrowser.Start(t)
	srv := start(t, ops.Options{Mesh: func(context.Context) any { return json.RawMessage(pageMesh) }})
	ctx, cancel := context.WithTimeout(browser, testutil.Timeout)
	defer cancel()
	console := testbrowser.Console(t, browser)
	testbrowser.Do(t, ctx, "the page", chromedp.Navigate("http://"+srv.Addr().String()+ops.PagePath))
	testbrowser.Wait(t, ctx, "the nodes", `document.querySelectorAll("#nodes tr[data-node]").length === 3`)

	ups := testbrowser.Eval[[]string](t, ctx, `[...document.querySelectorAll("#nodes tr[data-node]")].map((r) => r.dataset.node + " " + r.dataset.up)`)
	if got := strings.Join(ups, ", "); got != "http://a:1 true, http://b:2 true, http://c:3 false" {
		t.Errorf("nodes: %s", got)
	}
	cells := testbrowser.Eval[[]string](t, ctx, `[...document.querySelectorAll("#matrix td")].map((td) => td.dataset.from + ">" + td.dataset.to + " " + td.dataset.state)`)
	want := "http://a:1>http://a:1 self, http://a:1>http://b:2 connected, http://a:1>http://c:3 connecting, " +
		"http://b:2>http://a:1 connected, http://b:2>http://b:2 self, http://b:2>http://c:3 connecting, " +
		"http://c:3>http://a:1 unknown, http://c:3>http://b:2 unknown, http://c:3>http://c:3 self"
	if got := strings.Join(cells, ", "); got != want {
		t.Errorf("matrix:\n%s\nwant\n%s", got, want)
	}
	text := testbrowser.Eval[string](t, ctx, `document.body.innerText`)
	for _, w := range []string{
		"rtt 420 µs", "2 reconnects", // a's connection to b
		"250.0 ms\ntx latency p99", "2.10 ms\ntx latency p50", "38\nlatency samples",
		"3 of 4", "2 of 2 up, 3 started", // worker b's load and processes
		"slow: no answer within 1.5s",
		`connecting: <img src=x onerror="window.pwned=1">`,
	} {
		if !strings.Contains(text, w) {
			t.Errorf("the page lacks %q:\n%s", w, text)
		}
	}
	errs := testbrowser.Eval[string](t, ctx, `document.querySelector('#gateways tr[data-worker="http://b:2"]').children[5].textContent`)
	if errs != "7" {
		t.Errorf("worker b's contract errors: %q, want 7", errs)
	}
	if n := testbrowser.Eval[int](t, ctx, `document.querySelectorAll("img").length + (window.pwned ? 100 : 0)`); n != 0 {
		t.Errorf("a node's error became markup (%d)", n)
	}
	testbrowser.CheckConsole(t, console())
}
