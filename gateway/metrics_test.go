package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/wire"
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
	// The histograms: every transaction counted once.
	for series, want := range map[string]float64{
		"gridmesh_gateway_transaction_seconds_count": n, `gridmesh_gateway_transaction_seconds_bucket{le="+Inf"}`: n,
		"gridmesh_gateway_queue_wait_seconds_count": n, `gridmesh_gateway_queue_wait_seconds_bucket{le="60"}`: n,
	} {
		if got := e.Samples[series]; got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if e.Type["gridmesh_gateway_transaction_seconds"] != "histogram" || e.Samples["gridmesh_gateway_transaction_seconds_sum"] <= 0 {
		t.Errorf("transaction_seconds: type %q sum %v", e.Type["gridmesh_gateway_transaction_seconds"], e.Samples["gridmesh_gateway_transaction_seconds_sum"])
	}
	ran := 0.0
	for _, w := range c.Names[1:] {
		ran += e.Samples[`gridmesh_gateway_worker_contract_seconds_count{worker="`+w+`"}`]
		for _, kind := range wire.Kinds {
			if v, ok := e.Samples[`gridmesh_gateway_worker_contract_errors_total{worker="`+w+`",kind="`+kind+`"}`]; !ok || v != 0 {
				t.Errorf("worker %s errors of kind %s: %v (present %v)", w, kind, v, ok)
			}
		}
	}
	if ran != n {
		t.Errorf("contract durations counted %v, want %d", ran, n)
	}
	testutil.CheckPromtool(t, body)

	resp, body = httpGet(t, c.Names[0]+gateway.StatsPath)
	var st gateway.NodeStats
	if err := json.Unmarshal([]byte(body), &st); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("stats: %v %q", err, body)
	}
	if st.Gateway == nil || st.Gateway.Sent != n || st.Dispatch == nil || len(st.Dispatch.Workers) != 2 {
		t.Fatalf("stats: %s", body)
	}
	if l := st.Gateway.TxLatency; l.Count != n || l.Window != n || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > 60 {
		t.Errorf("tx_latency %+v", l)
	}
	if !strings.Contains(body, `"tx_latency": {`) || !strings.Contains(body, `"p99": `) {
		t.Errorf("stats JSON lacks tx_latency: %s", body)
	}

	req, _ := http.NewRequest(http.MethodPost, c.Names[0]+gateway.MetricsPath, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestMetricsContractErrors counts contract errors per worker and kind:
// an error, a panic and a timeout, and answers without error.
func TestMetricsContractErrors(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	fn := func(ctx context.Context, txJSON string, env, sec map[string]string) (contract.Output, error) {
		switch {
		case strings.Contains(txJSON, `"seq":0,`):
			return contract.Output{}, errors.New("bad transaction")
		case strings.Contains(txJSON, `"seq":1,`):
			panic("boom")
		case strings.Contains(txJSON, `"seq":2,`):
			<-ctx.Done()
			return contract.Output{}, ctx.Err()
		}
		return testcluster.Echo(ctx, txJSON, env, sec)
	}
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: fn, TxTimeout: 200 * time.Millisecond})
	testcluster.Submit(t, prime, 5)
	testcluster.WaitAnswered(t, prime, 5, c)
	testutil.WaitUntil(t, "the last send counted", func() bool { return c.Gateway.Stats().Sent == 5 })
	m := &gateway.Metrics{Gateway: c.Gateway, Dispatcher: c.Dispatcher}
	var b strings.Builder
	m.WriteMetrics(&b)
	e := testutil.ParseExposition(t, b.String())
	w := c.Names[1]
	for kind, want := range map[string]float64{wire.KindError: 1, wire.KindPanic: 1, wire.KindTimeout: 1, wire.KindProcess: 0} {
		if got := e.Samples[`gridmesh_gateway_worker_contract_errors_total{worker="`+w+`",kind="`+kind+`"}`]; got != want {
			t.Errorf("errors of kind %s: %v, want %v", kind, got, want)
		}
	}
	st := m.Stats()
	if st.Gateway.ContractErrors != 2 || st.Gateway.ContractTimeouts != 1 || st.Dispatch.Workers[0].ContractErrors != 3 {
		t.Errorf("gateway %+v, worker %+v", st.Gateway, st.Dispatch.Workers[0])
	}
	if got := e.Samples[`gridmesh_gateway_worker_contract_seconds_bucket{worker="`+w+`",le="0.1"}`]; got != 4 {
		t.Errorf("%v contracts ran within 0.1 s, want 4 (all but the timeout)", got)
	}
	testutil.CheckPromtool(t, b.String())
}
