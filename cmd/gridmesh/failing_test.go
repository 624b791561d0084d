package main

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/internal/ops"
)

// TestProcessesFailingContracts: 50 transactions whose contract fails
// (exit 3) are answered to Prime with the contract's error, and the
// failures are visible: the worker's and the gateway's counters, its
// WARN lines (rate-limited, each with its transaction's ID) and
// `gridmesh status`.
func TestProcessesFailingContracts(t *testing.T) {
	const n = 50
	prime, ctx := processTest(t)
	c := newTestCluster(t, 1)
	gw := startChild(t, ctx, "gateway", "-config", c.gatewayConfig(prime.Addr().String(), "reconnect_delay_seconds: 1\n"))
	wk := startChild(t, ctx, "worker", "-config", c.workerConfig(1,
		"command: [sh, -c, 'cat >/dev/null; echo \"no such table: accounts\" >&2; exit 3']\ncapacity: 8\n"))
	client := &opsClient{http: http.DefaultClient}
	client.waitStatus(t, ctx, "http://"+c.ops[0]+ops.ReadyPath, "", http.StatusOK, "ready", func() string { return gw.stderr.String() })
	if err := prime.Generate(ctx, "sc", n, 0); err != nil {
		t.Fatal(err)
	}
	if err := prime.WaitAnswered(ctx, n); err != nil {
		t.Fatalf("%v\n%s", err, gw.stderr.String())
	}
	if r := prime.Report(); !r.OK() {
		t.Fatalf("report:\n%v", r)
	}

	_, wkMetrics := client.get(t, "http://"+c.ops[1]+ops.MetricsPath, "")
	_, gwMetrics := client.get(t, "http://"+c.ops[0]+ops.MetricsPath, "")
	for _, want := range []string{fmt.Sprintf("\ngridmesh_worker_contract_errors_total %d\n", n), "\ngridmesh_worker_contract_timeouts_total 0\n"} {
		if !strings.Contains(wkMetrics, want) {
			t.Errorf("worker metrics lack %q", want)
		}
	}
	if want := fmt.Sprintf("\ngridmesh_gateway_contract_errors_total %d\n", n); !strings.Contains(gwMetrics, want) {
		t.Errorf("gateway metrics lack %q", want)
	}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"status", "http://" + c.ops[1]}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), fmt.Sprintf("contract errors %d, timeouts 0", n)) {
		t.Errorf("status: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	t.Logf("gridmesh status of the worker:\n%s", out.String())
	wk.term(t, "worker")
	gw.term(t, "gateway")

	warn := regexp.MustCompile(`level=WARN msg="worker: contract failed" transaction_id=(\S+) err="contract failed: exit status 3"`)
	lines := warn.FindAllStringSubmatch(wk.stderr.String(), -1)
	if len(lines) < 10 || len(lines) > 20 {
		t.Fatalf("%d WARN lines for %d failures, want 10 (a burst) to 20:\n%s", len(lines), n, wk.stderr.String())
	}
	for _, l := range lines {
		if resp, ok := prime.Answer("sc", l[1]); !ok || !strings.Contains(resp.GetError(), "exit status 3") {
			t.Errorf("WARN line names %q, not a transaction Prime got that error for", l[1])
		}
	}
	t.Logf("the worker's WARN lines:\n%s", strings.Join(grep(wk.stderr.String(), "WARN"), "\n"))
}

// grep returns the lines of s holding substr.
func grep(s, substr string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
