package ops_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/promtext"
	gmtestutil "github.com/gridmesh/gridmesh/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// timeout bounds every request of these tests.
const timeout = 10 * time.Second

var client = &http.Client{Timeout: timeout}

// get fetches path from srv with token (if any), returning the status
// and body.
func get(t *testing.T, srv *ops.Server, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+srv.Addr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(body)
}

// sample writes library-style metrics: a counter and a labelled gauge.
func sample(w io.Writer) {
	promtext.WriteFamilies(w, []promtext.Family[int]{
		promtext.Counter("gridmesh_test_done_total", "Things done.", func(n int) float64 { return float64(n) }),
	}, 42)
	promtext.WriteLabelled(w, []promtext.Family[string]{
		promtext.Gauge("gridmesh_test_peer_up", "1 while the peer is up.", func(string) float64 { return 1 }),
	}, "peer", []string{`http://a:1`, `http://"b":2`}, func(s string) string { return s })
	h := promtext.NewHistogram([]float64{0.1, 1})
	h.Observe(0.05)
	h.Observe(5)
	promtext.WriteHistogram(w, "gridmesh_test_latency_seconds", "How long things took.",
		promtext.HistogramSeries{Labels: []string{"peer", "http://a:1"}, Snapshot: h.Snapshot()})
}

func start(t *testing.T, opts ops.Options) *ops.Server {
	t.Helper()
	opts.Listen = "127.0.0.1:0"
	srv, err := ops.Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// TestProbes: /healthz and /readyz answer 200 while their checks pass,
// and 503 with the reason when not.
func TestProbes(t *testing.T) {
	var ready atomic.Bool
	srv := start(t, ops.Options{Ready: func() error {
		if !ready.Load() {
			return errors.New("no worker ready")
		}
		return nil
	}})
	if code, body := get(t, srv, ops.HealthPath, ""); code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	if code, body := get(t, srv, ops.ReadyPath, ""); code != 503 || body != "not ready: no worker ready\n" {
		t.Fatalf("readyz before: %d %q", code, body)
	}
	ready.Store(true)
	if code, body := get(t, srv, ops.ReadyPath, ""); code != 200 || body != "ready\n" {
		t.Fatalf("readyz after: %d %q", code, body)
	}
	if code, _ := get(t, srv, ops.PprofPath, ""); code != 404 {
		t.Fatalf("pprof not enabled: %d, want 404", code)
	}
}

// TestToken: with a token, everything but the probes answers 401 without
// it, and with a wrong one.
func TestToken(t *testing.T) {
	srv := start(t, ops.Options{
		Token: "s3cret", Pprof: true,
		Stats:    func() any { return map[string]int{"done": 1} },
		Gatherer: mustRegistry(t),
	})
	for _, p := range []string{ops.MetricsPath, ops.StatsPath, ops.PprofPath, "/nowhere"} {
		for _, tok := range []string{"", "wrong", "s3cret2"} {
			if code, _ := get(t, srv, p, tok); code != http.StatusUnauthorized {
				t.Errorf("%s with token %q: %d, want 401", p, tok, code)
			}
		}
	}
	for _, p := range []string{ops.MetricsPath, ops.StatsPath, ops.PprofPath} {
		if code, body := get(t, srv, p, "s3cret"); code != 200 || strings.Contains(body, "s3cret") {
			t.Errorf("%s with the token: %d (or the token in the body)", p, code)
		}
	}
	for _, p := range []string{ops.HealthPath, ops.ReadyPath} {
		if code, _ := get(t, srv, p, ""); code != 200 {
			t.Errorf("%s without a token: %d, want 200", p, code)
		}
	}
}

func mustRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg, err := ops.NewRegistry(ops.NewTextCollector(sample))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestMetrics: /metrics carries the library's families under their own
// names, histograms included, the Go and process collectors and gridmesh_build_info, and is
// clean by promtool's and client_golang's linters.
func TestMetrics(t *testing.T) {
	reg := mustRegistry(t)
	srv := start(t, ops.Options{Gatherer: reg})
	code, body := get(t, srv, ops.MetricsPath, "")
	if code != 200 {
		t.Fatalf("metrics: %d %s", code, body)
	}
	for _, want := range []string{
		"# HELP gridmesh_test_done_total Things done.\n# TYPE gridmesh_test_done_total counter\ngridmesh_test_done_total 42\n",
		`gridmesh_test_peer_up{peer="http://\"b\":2"} 1`,
		"# TYPE gridmesh_test_latency_seconds histogram\n",
		`gridmesh_test_latency_seconds_bucket{peer="http://a:1",le="0.1"} 1`,
		`gridmesh_test_latency_seconds_bucket{peer="http://a:1",le="+Inf"} 2`,
		`gridmesh_test_latency_seconds_sum{peer="http://a:1"} 5.05`,
		`gridmesh_test_latency_seconds_count{peer="http://a:1"} 2`,
		"go_goroutines ", "process_cpu_seconds_total ", "gridmesh_build_info{goversion=\"go",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	gmtestutil.CheckPromtool(t, body)
}

// TestTextCollectorBadExposition: text that does not parse fails the
// scrape instead of vanishing.
func TestTextCollectorBadExposition(t *testing.T) {
	reg, err := ops.NewRegistry(ops.NewTextCollector(func(w io.Writer) { fmt.Fprintln(w, "not { metrics") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err == nil {
		t.Fatal("a broken exposition gathered without error")
	}
}
