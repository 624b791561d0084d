package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

func httpGet(tb testing.TB, url string) (*http.Response, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, string(body)
}

// TestMetrics serves a gateway node's metrics on its own HTTP server and
// scrapes them after a run, in both formats.
func TestMetrics(t *testing.T) {
	const n = 100
	prime := testcluster.StartPrime(t, primesim.Config{})
	c := testcluster.Start(t, testcluster.Options{Workers: 2, Prime: testcluster.PrimeConfig(prime)})
	m := &gateway.Metrics{Gateway: c.Gateway, Dispatcher: c.Dispatcher}
	c.GatewayNode.Handle(gateway.MetricsPath, m.Handler())
	c.GatewayNode.Handle(gateway.StatsPath, m.StatsHandler())
	testcluster.Submit(t, prime, n)
	testcluster.WaitAnswered(t, prime, n, c)
	testutil.WaitUntil(t, "the last send counted", func() bool { return c.Gateway.Stats().Sent == n })

	resp, body := httpGet(t, c.Names[0]+gateway.MetricsPath)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET metrics: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	e := testutil.ParseExposition(t, body)
	for series, want := range map[string]float64{
		"gridmesh_gateway_received_total": n, "gridmesh_gateway_started_total": n, "gridmesh_gateway_journaled_total": n,
		"gridmesh_gateway_sent_total": n, "gridmesh_gateway_from_journal_total": 0, "gridmesh_gateway_streams_total": 1,
		"gridmesh_gateway_prime_connected": 1, "gridmesh_gateway_in_flight": 0, "gridmesh_gateway_redispatched_total": 0,
	} {
		if got, ok := e.Samples[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	done := 0.0
	for _, w := range c.Names[1:] {
		label := `{worker="` + w + `"}`
		if e.Samples["gridmesh_gateway_worker_up"+label] != 1 || e.Samples["gridmesh_gateway_worker_capacity"+label] != 4 {
			t.Errorf("worker %s: %v", w, e.Samples)
		}
		done += e.Samples["gridmesh_gateway_worker_done_total"+label]
	}
	if done != n {
		t.Errorf("workers did %v, want %d:\n%s", done, n, body)
	}
	if _, ok := e.Type["gridmesh_worker_capacity"]; ok {
		t.Error("a gateway node exposes worker families")
	}

	resp, body = httpGet(t, c.Names[0]+gateway.StatsPath)
	var st gateway.NodeStats
	if err := json.Unmarshal([]byte(body), &st); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("stats: %v %q", err, body)
	}
	if st.Gateway == nil || st.Gateway.Sent != n || st.Dispatch == nil || len(st.Dispatch.Workers) != 2 {
		t.Fatalf("stats: %s", body)
	}

	req, _ := http.NewRequest(http.MethodPost, c.Names[0]+gateway.MetricsPath, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
