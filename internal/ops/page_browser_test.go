package ops_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testbrowser"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// pageMesh is a mesh as grid.MeshStats encodes it: a gateway (with its
// transaction latency), a worker with contract errors (which lists a
// made-up peer beside a peer not in the gatherer's hosts), a worker that
// is down with an error holding markup, which must show as text, and a
// node of an older version, up without stats.
const pageMesh = `{
  "from": "http://a:1", "time": "2026-01-01T00:00:00Z",
  "nodes": [
    {"host": "http://a:1", "self": true, "state": "connected", "up": true, "call_seconds": 0.0001,
     "stats": {"host": "http://a:1", "instance": "i1", "time": "2026-01-01T00:00:00Z", "ping_timeout_seconds": 3,
       "grid": {"local": "http://a:1", "connected": 1, "requests_out": 12, "peers": {
         "http://b:2": {"host": "http://b:2", "state": "connected", "last_rtt_seconds": 0.00042, "bytes_in": 100, "bytes_out": 200, "reconnects": 2},
         "http://c:3": {"host": "http://c:3", "state": "connecting", "last_error": "dial: refused"},
         "http://d:4": {"host": "http://d:4", "state": "connected"}}},
       "sections": {
         "gateway": {"connected": true, "received": 40, "sent": 38, "in_flight": 2, "journaled": 38,
           "tx_latency": {"count": 38, "p50": 0.0021, "p90": 0.0105, "p99": 0.25}},
         "dispatch": {"redispatched": 1, "workers": [
           {"host": "http://b:2", "up": true, "capacity": 4, "running": 3, "done": 30},
           {"host": "http://c:3", "up": false, "capacity": 4, "running": 0, "done": 8}]}}}},
    {"host": "http://b:2", "state": "connected", "up": true, "call_seconds": 0.002, "peers_left_out": 3,
     "stats": {"host": "http://b:2", "instance": "i2", "time": "2026-01-01T00:00:00Z",
       "grid": {"local": "http://b:2", "connected": 1, "served": 30, "peers": {
         "http://a:1": {"host": "http://a:1", "state": "connected"},
         "http://c:3": {"host": "http://c:3", "state": "connecting"},
         "http://made-up:9": {"host": "http://made-up:9", "state": "connected"}}},
       "sections": {"worker": {"capacity": 4, "running": 3, "done": 30, "contract_errors": 7, "contract_timeouts": 1},
         "processes": {"processes": 2, "running": 2, "starts": 3}},
       "section_errors": {"slow": "no answer within 1.5s"}}},
    {"host": "http://c:3", "state": "connecting", "up": false, "call_seconds": 0,
     "error": "connecting: <img src=x onerror=\"window.pwned=1\">"},
    {"host": "http://d:4", "state": "connected", "up": true, "call_seconds": 0.001, "older_version": true,
     "stats_error": "no stats handler (an older version): mux: grid-stats(4095): remote: unknown handler grid-stats(4095)"}
  ]
}`

// oddMesh is JSON of the wrong shapes everywhere, which the page must
// draw what it can of, without failing: two nodes with a host.
const oddMesh = `{"from": 5, "nodes": [null, 3, {"host": {"x": 1}},
  {"host": "http://e:5", "up": true, "stats": {"grid": null, "sections": "x", "section_errors": [1]}},
  {"host": "http://f:6", "up": true, "stats": {"grid": {"connected": "two", "peers": {"http://e:5": null, "http://f:6": 7}},
    "sections": {"gateway": 3, "dispatch": {"workers": "x"}, "worker": [], "processes": null}}}]}`

// TestPageRenders opens the status page in headless Chromium against a
// fixed mesh, with the token in the address's fragment: the page moves
// the token to the tab's session storage and out of the address at once,
// and polls with it (after a reload too). The nodes, the matrix (a
// column per node, none for a peer beyond them) and the pipeline show
// what the mesh holds, the transaction latency percentiles included, an
// older node as up without stats, and what a node sent is text, never
// markup. JSON of the wrong shapes is drawn as far as it goes.
func TestPageRenders(t *testing.T) {
	const token = "t0k3n-in-the-fragment"
	browser := testbrowser.Start(t)
	var served atomic.Pointer[string]
	served.Store(new(pageMesh))
	srv := start(t, ops.Options{Token: token, Mesh: func(context.Context) any { return json.RawMessage(*served.Load()) }})
	ctx, cancel := context.WithTimeout(browser, testutil.Timeout)
	defer cancel()
	console := testbrowser.Console(t, browser)
	testbrowser.Do(t, ctx, "the page", chromedp.Navigate("http://"+srv.Addr().String()+ops.PagePath+"#token="+token))
	testbrowser.Wait(t, ctx, "the nodes", `document.querySelectorAll("#nodes tr[data-node]").length === 4`)
	checkToken := func(when string) {
		t.Helper()
		if u := testbrowser.Eval[string](t, ctx, "location.href"); strings.Contains(u, token) || strings.Contains(u, "#") {
			t.Errorf("%s: the address holds the token: %q", when, u)
		}
		if got := testbrowser.Eval[string](t, ctx, `sessionStorage.getItem("gridmesh-ops-token")`); got != token {
			t.Errorf("%s: the tab's session storage holds %q", when, got)
		}
		if !testbrowser.Eval[bool](t, ctx, `document.getElementById("auth").hidden && document.getElementById("poll").dataset.state === "ok"`) {
			t.Errorf("%s: the page asks for the token, or its poll failed", when)
		}
	}
	checkToken("after the page loaded")

	ups := testbrowser.Eval[[]string](t, ctx, `[...document.querySelectorAll("#nodes tr[data-node]")].map((r) => r.dataset.node + " " + r.dataset.up + " " + r.dataset.state + " " + r.querySelector(".badge").textContent)`)
	if got := strings.Join(ups, ", "); got != "http://a:1 true up up, http://b:2 true up up, http://c:3 false down down, "+
		"http://d:4 true nostats up, no stats (older version)" {
		t.Errorf("nodes: %s", got)
	}
	cells := testbrowser.Eval[[]string](t, ctx, `[...document.querySelectorAll("#matrix td")].map((td) => td.dataset.from + ">" + td.dataset.to + " " + td.dataset.state)`)
	want := "http://a:1>http://a:1 self, http://a:1>http://b:2 connected, http://a:1>http://c:3 connecting, http://a:1>http://d:4 connected, " +
		"http://b:2>http://a:1 connected, http://b:2>http://b:2 self, http://b:2>http://c:3 connecting, http://b:2>http://d:4 unlisted, " +
		"http://c:3>http://a:1 unknown, http://c:3>http://b:2 unknown, http://c:3>http://c:3 self, http://c:3>http://d:4 unknown, " +
		"http://d:4>http://a:1 unknown, http://d:4>http://b:2 unknown, http://d:4>http://c:3 unknown, http://d:4>http://d:4 self"
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
		"no stats handler (an older version)",                 // d's error
		"3 peers not in this node's hosts left out", "1 of 3", // b's

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

	// Reloaded, the page still has the token, from the tab's storage.
	testbrowser.Do(t, ctx, "the reload", chromedp.Reload())
	testbrowser.Wait(t, ctx, "the nodes after a reload", `document.querySelectorAll("#nodes tr[data-node]").length === 4 && Number(document.getElementById("poll").dataset.polls) >= 1`)
	checkToken("after a reload")

	// Odd shapes: what has a host is drawn, and the poll goes on.
	served.Store(new(oddMesh))
	testbrowser.Wait(t, ctx, "the odd mesh drawn", `(() => {
		const rows = [...document.querySelectorAll("#nodes tr[data-node]")].map((r) => r.dataset.node).join(" ");
		return rows === "http://e:5 http://f:6" && document.getElementById("poll").dataset.state === "ok";
	})()`)
	polls := testbrowser.Eval[int](t, ctx, `Number(document.getElementById("poll").dataset.polls)`)
	testbrowser.Wait(t, ctx, "a further poll of the odd mesh", fmt.Sprintf(`Number(document.getElementById("poll").dataset.polls) > %d && document.getElementById("poll").dataset.state === "ok"`, polls))
	testbrowser.CheckConsole(t, console())
}
