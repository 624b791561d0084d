package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testbrowser"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// Bounds of how fast the status page must show a lost node: the grid's
// default ping timeout (the gatherer's wait for a silent node; a killed
// one's connection breaks at once) plus one poll of the page, plus slack
// for a machine that runs Chromium and -race processes on few cores.
const (
	defaultPingTimeout = 3 * time.Second
	pagePoll           = time.Second
	loadSlack          = 5 * time.Second
)

// meshCluster is a gateway and two process-mode workers, each its own
// process, the gateway's operations port behind a token, with a trickle
// of load from Prime.
type meshCluster struct {
	*testCluster
	token   string
	workers []*child
}

// startMeshCluster starts the processes and the load, and waits until the
// gateway's /mesh shows every node up.
func startMeshCluster(t *testing.T) *meshCluster {
	t.Helper()
	prime, ctx := processTest(t)
	c := &meshCluster{testCluster: newTestCluster(t, 2), token: "page-token"}
	tokenFile := filepath.Join(c.dir, "ops-token")
	if err := os.WriteFile(tokenFile, []byte(c.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gwCfg := c.gatewayConfig(prime.Addr().String(), "ops_token_file: "+tokenFile+"\n")
	for i := 1; i <= 2; i++ {
		c.workers = append(c.workers, startChild(t, ctx, "worker", "-config", c.workerConfig(i, processWorker(t, 1, 8, "1s", "contract-demo"))))
	}
	startChild(t, ctx, "gateway", "-config", gwCfg)
	// A steady trickle, so that the page has rates to show; it stops
	// when the test ends.
	load, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = prime.Generate(load, "sc", 1_000_000, 40) })
	t.Cleanup(func() { stop(); wg.Wait() })
	// Every node up with both its peers, and the gateway holding Prime's
	// stream with answers sent: a loaded machine may take seconds for
	// the gateway to connect to Prime after the grid is up.
	c.waitMesh(t, "every node up and Prime's stream answered", func(ms grid.MeshStats) bool {
		up, answered := 0, false
		for _, n := range ms.Nodes {
			if n.Up && n.Stats != nil && n.Stats.Grid.Connected == 2 {
				up++
			}
			if n.Stats == nil || n.Host != c.names[0] {
				continue
			}
			var gw gateway.Stats
			answered = json.Unmarshal(n.Stats.Sections["gateway"], &gw) == nil && gw.Connected && gw.Sent > 0
		}
		return up == 3 && answered
	})
	return c
}

// mesh reads the gateway's /mesh.
func (c *meshCluster) mesh() (grid.MeshStats, error) {
	var ms grid.MeshStats
	req, err := http.NewRequest(http.MethodGet, "http://"+c.gatewayAddr()+ops.MeshPath, nil)
	if err != nil {
		return ms, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return ms, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return ms, fmt.Errorf("mesh: %d %s %v", resp.StatusCode, body, err)
	}
	return ms, json.Unmarshal(body, &ms)
}

// waitMesh waits until the gateway's /mesh satisfies cond.
func (c *meshCluster) waitMesh(t *testing.T, what string, cond func(grid.MeshStats) bool) {
	t.Helper()
	testutil.WaitUntil(t, what, func() bool {
		ms, err := c.mesh()
		if err != nil {
			time.Sleep(20 * time.Millisecond) // the gateway is starting
			return false
		}
		return cond(ms)
	})
}

// kill kills worker i (from 1) with SIGKILL.
func (c *meshCluster) kill(t *testing.T, i int) {
	t.Helper()
	if err := c.workers[i-1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// TestStatusPageBrowser opens the gateway's status page in headless
// Chromium against a gateway and two workers running as processes: it
// asks for the token, then shows every node, the matrix and the
// pipeline; a worker killed with SIGKILL shows as down within the ping
// timeout and one poll. GRIDMESH_SCREENSHOT=file.png saves what the
// browser shows then.
func TestStatusPageBrowser(t *testing.T) {
	browser := testbrowser.Start(t)
	c := startMeshCluster(t)
	ctx, cancel := context.WithTimeout(browser, testutil.Timeout)
	defer cancel()
	console := testbrowser.Console(t, browser)
	page := "http://" + c.gatewayAddr() + ops.PagePath

	// Without the token the page asks for it; given in the form, it goes
	// in the tab's session storage, not in the address, and the page polls
	// with it.
	testbrowser.Do(t, ctx, "the page", chromedp.Navigate(page))
	testbrowser.Wait(t, ctx, "the token form", `!document.getElementById("auth").hidden`)
	testbrowser.Do(t, ctx, "the token", chromedp.SendKeys(chromedp.ID("token"), c.token))
	testbrowser.Do(t, ctx, "the form", chromedp.Click(chromedp.CSS("#auth button")))
	allUp := `(() => {
		const rows = [...document.querySelectorAll("#nodes tr[data-node]")];
		return rows.length === 3 && rows.every((r) => r.dataset.up === "true") &&
			document.querySelectorAll('#gateways tr[data-worker][data-up="true"]').length === 2 &&
			document.querySelectorAll('#matrix td[data-state="connected"]').length === 6 &&
			Number(document.getElementById("poll").dataset.polls) >= 2;
	})()`
	testbrowser.Wait(t, ctx, "every node up on the page", allUp)
	if u := testbrowser.Eval[string](t, ctx, "location.href"); u != page {
		t.Errorf("the page's address after the form: %q, want %q", u, page)
	}
	if tok := testbrowser.Eval[string](t, ctx, `sessionStorage.getItem("gridmesh-ops-token")`); tok != c.token {
		t.Errorf("the tab's session storage holds the token %q, want %q", tok, c.token)
	}
	shown := testbrowser.Eval[[]string](t, ctx, `[...document.querySelectorAll("#nodes tr[data-node]")].map((r) => r.dataset.node)`)
	if want := slices.Sorted(slices.Values(c.names)); !slices.Equal(shown, want) {
		t.Errorf("nodes shown: %q, want %q", shown, want)
	}
	if text := testbrowser.Eval[string](t, ctx, `document.getElementById("gateways").innerText`); !strings.Contains(text, "Prime stream") || !strings.Contains(text, "contract errors") {
		t.Errorf("the pipeline shows %q", text)
	}

	file := os.Getenv("GRIDMESH_SCREENSHOT")
	if file != "" {
		// For the picture: wait for the first pings' round trips (the
		// grid pings every 10 s by default).
		testbrowser.Wait(t, ctx, "round trips on the page", `document.querySelectorAll("#matrix td[data-rtt]").length === 6`)
	}

	// Worker 2 is killed: the page marks it down, in the node list, the
	// matrix (as its peers see it) and the pipeline.
	killed := c.names[2]
	c.kill(t, 2)
	start := time.Now()
	testbrowser.Wait(t, ctx, "the killed worker down on the page", fmt.Sprintf(`(() => {
		const row = document.querySelector('#nodes tr[data-node=%[1]q]');
		const w = document.querySelector('#gateways tr[data-worker=%[1]q]');
		const seen = [...document.querySelectorAll('#matrix td[data-to=%[1]q]')].map((td) => td.dataset.state);
		return row.dataset.up === "false" && w.dataset.up === "false" &&
			seen.filter((s) => s === "connecting").length === 2;
	})()`, killed))
	took := time.Since(start)
	t.Logf("the killed worker showed as down after %v", took.Round(time.Millisecond))
	if limit := defaultPingTimeout + pagePoll + loadSlack; took > limit {
		t.Errorf("the page showed the killed worker down after %v, over the ping timeout, a poll and %v of slack (%v)", took, loadSlack, limit)
	}
	if up := testbrowser.Eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#nodes tr[data-node=%q]').dataset.up`, c.names[1])); up != "true" {
		t.Errorf("the other worker: up %q", up)
	}
	if file != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", file)
	}
	testbrowser.CheckConsole(t, console(), "401") // the first polls', before the token
}
