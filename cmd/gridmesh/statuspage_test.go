package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// Bounds of how fast the status page must show a lost node: the grid's
// default ping timeout (the gatherer's wait for a silent node; a killed
// one's connection breaks at once) plus one poll of the page.
const (
	defaultPingTimeout = 3 * time.Second
	pagePoll           = time.Second
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
	c.waitMesh(t, "every node up", func(ms grid.MeshStats) bool {
		up := 0
		for _, n := range ms.Nodes {
			if n.Up && n.Stats.Grid.Connected == 2 {
				up++
			}
		}
		return up == 3
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
	browser := startBrowser(t)
	c := startMeshCluster(t)
	ctx, cancel := context.WithTimeout(browser, testutil.Timeout)
	defer cancel()
	console := watchConsole(t, browser)
	page := "http://" + c.gatewayAddr() + ops.PagePath

	// Without the token the page asks for it; given in the form, it goes
	// in the address's fragment and the page polls with it.
	pageDo(t, ctx, "the page", chromedp.Navigate(page))
	pageWait(t, ctx, "the token form", `!document.getElementById("auth").hidden`)
	pageDo(t, ctx, "the token", chromedp.SendKeys(chromedp.ID("token"), c.token))
	pageDo(t, ctx, "the form", chromedp.Click(chromedp.CSS("#auth button")))
	allUp := `(() => {
		const rows = [...document.querySelectorAll("#nodes tr[data-node]")];
		return rows.length === 3 && rows.every((r) => r.dataset.up === "true") &&
			document.querySelectorAll('#gateways tr[data-worker][data-up="true"]').length === 2 &&
			document.querySelectorAll('#matrix td[data-state="connected"]').length === 6 &&
			Number(document.getElementById("poll").dataset.polls) >= 2;
	})()`
	pageWait(t, ctx, "every node up on the page", allUp)
	if u, err := chromedp.Run(ctx, chromedp.Evaluate[string]("location.href")); err != nil || !strings.HasSuffix(u, "#token="+c.token) {
		t.Errorf("the page's address after the form: %q, %v", u, err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#nodes tr[data-node]")].map((r) => r.dataset.node)`))
	if want := slices.Sorted(slices.Values(c.names)); err != nil || !slices.Equal(shown, want) {
		t.Errorf("nodes shown: %q (%v), want %q", shown, err, want)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("gateways").innerText`))
	if err != nil || !strings.Contains(text, "Prime stream") || !strings.Contains(text, "contract errors") {
		t.Errorf("the pipeline shows %q, %v", text, err)
	}

	file := os.Getenv("GRIDMESH_SCREENSHOT")
	if file != "" {
		// For the picture: wait for the first pings' round trips (the
		// grid pings every 10 s by default).
		pageWait(t, ctx, "round trips on the page", `document.querySelectorAll("#matrix td[data-rtt]").length === 6`)
	}

	// Worker 2 is killed: the page marks it down, in the node list, the
	// matrix (as its peers see it) and the pipeline.
	killed := c.names[2]
	c.kill(t, 2)
	start := time.Now()
	pageWait(t, ctx, "the killed worker down on the page", fmt.Sprintf(`(() => {
		const row = document.querySelector('#nodes tr[data-node=%[1]q]');
		const w = document.querySelector('#gateways tr[data-worker=%[1]q]');
		const seen = [...document.querySelectorAll('#matrix td[data-to=%[1]q]')].map((td) => td.dataset.state);
		return row.dataset.up === "false" && w.dataset.up === "false" &&
			seen.filter((s) => s === "connecting").length === 2;
	})()`, killed))
	took := time.Since(start)
	t.Logf("the killed worker showed as down after %v", took.Round(time.Millisecond))
	if limit := defaultPingTimeout + pagePoll; took > limit {
		t.Errorf("the page showed the killed worker down after %v, over the ping timeout and a poll (%v)", took, limit)
	}
	if up, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('#nodes tr[data-node=%q]').dataset.up`, c.names[1]))); err != nil || up != "true" {
		t.Errorf("the other worker: up %q, %v", up, err)
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
	for _, m := range console() {
		// The only error expected: the first polls' 401, before the token.
		if m.IsException() || m.Source == "security" || (m.Type == chromedp.ConsoleError && !strings.Contains(m.Text, "401")) {
			t.Errorf("the page's console: %v (%s)", m, m.Source)
		}
	}
}

// startBrowser starts headless Chromium for the test and closes it at
// its end. Without Chromium the test skips, unless
// GRIDMESH_REQUIRE_CHROMIUM=1 (as in CI).
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Chromium and processes")
	}
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("GRIDMESH_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("Chromium is not installed (GRIDMESH_REQUIRE_CHROMIUM=1): apt-get install chromium")
		}
		t.Skip("Chromium is not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root, Chromium refuses to start sandboxed
		chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	// The first action starts the browser, which lives as long as the
	// context it gets: not one with a timeout. Chromium's start is bounded
	// by chromedp's wait for its DevTools address (20 s).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// watchConsole collects the page's console messages and uncaught
// exceptions; the func it returns stops and returns them.
func watchConsole(t *testing.T, browser context.Context) func() []chromedp.ConsoleMessage {
	ctx, cancel := context.WithCancel(browser)
	messages := chromedp.Console(ctx)
	var got []chromedp.ConsoleMessage
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			got = append(got, m)
		}
	}()
	stop := func() []chromedp.ConsoleMessage {
		cancel()
		<-done
		return got
	}
	t.Cleanup(func() { stop() })
	return stop
}

// pageDo runs a browser action, failing the test with what on error.
func pageDo(t *testing.T, ctx context.Context, what string, a chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, a); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pageWait waits until the page's JavaScript expression is true, within
// ctx's deadline.
func pageWait(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(testutil.Timeout))); err != nil {
		shot, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		html, _ := chromedp.Run(shot, chromedp.Evaluate[string]("document.body.innerText"))
		t.Fatalf("waiting for %s: %v\nthe page:\n%s", what, err, html)
	}
}
