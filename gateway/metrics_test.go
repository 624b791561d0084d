package gateway_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// exposition is a parsed Prometheus text exposition.
type exposition struct {
	help, typ map[string]string  // family → text
	samples   map[string]float64 // series (name and labels) → value
}

// parseExposition parses body, failing on anything the text format does
// not allow: a sample outside a declared family, a family declared twice,
// a malformed line.
func parseExposition(tb testing.TB, body string) exposition {
	tb.Helper()
	e := exposition{help: map[string]string{}, typ: map[string]string{}, samples: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "), strings.HasPrefix(line, "# TYPE "):
			f := strings.SplitN(line, " ", 4)
			m := e.help
			if f[1] == "TYPE" {
				m = e.typ
				if f[3] != "counter" && f[3] != "gauge" {
					tb.Fatalf("bad type: %q", line)
				}
			}
			if _, dup := m[f[2]]; dup || len(f) != 4 {
				tb.Fatalf("duplicate or malformed: %q", line)
			}
			m[f[2]] = f[3]
		default:
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				tb.Fatalf("malformed sample %q", line)
			}
			series, name := line[:i], line[:i]
			if j := strings.IndexByte(series, '{'); j >= 0 {
				name = series[:j]
			}
			if e.typ[name] == "" || e.help[name] == "" {
				tb.Fatalf("sample %q before its HELP and TYPE", line)
			}
			if e.typ[name] == "counter" && !strings.HasSuffix(name, "_total") {
				tb.Fatalf("counter %s does not end in _total", name)
			}
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				tb.Fatalf("sample %q: %v", line, err)
			}
			e.samples[series] = v
		}
	}
	return e
}

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
// scrapes them after a run, in both formats; then a worker's process
// pool's.
func TestMetrics(t *testing.T) {
	const n = 100
	prime := startPrime(t, primesim.Config{})
	c := startCluster(t, clusterOptions{workers: 2, prime: primeConfig(prime)})
	m := &gateway.Metrics{Gateway: c.gw, Dispatcher: c.disp}
	c.gwNode.Handle(gateway.MetricsPath, m.Handler())
	c.gwNode.Handle(gateway.StatsPath, m.StatsHandler())
	submit(t, prime, n)
	waitAnswered(t, prime, n, c)
	waitUntil(t, "the last send counted", func() bool { return c.gw.Stats().Sent == n })

	resp, body := httpGet(t, c.names[0]+gateway.MetricsPath)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET metrics: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	e := parseExposition(t, body)
	for series, want := range map[string]float64{
		"gridmesh_gateway_received_total": n, "gridmesh_gateway_started_total": n, "gridmesh_gateway_journaled_total": n,
		"gridmesh_gateway_sent_total": n, "gridmesh_gateway_from_journal_total": 0, "gridmesh_gateway_streams_total": 1,
		"gridmesh_gateway_prime_connected": 1, "gridmesh_gateway_in_flight": 0, "gridmesh_gateway_redispatched_total": 0,
	} {
		if got, ok := e.samples[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	done := 0.0
	for _, w := range c.names[1:] {
		label := `{worker="` + w + `"}`
		if e.samples["gridmesh_gateway_worker_up"+label] != 1 || e.samples["gridmesh_gateway_worker_capacity"+label] != 4 {
			t.Errorf("worker %s: %v", w, e.samples)
		}
		done += e.samples["gridmesh_gateway_worker_done_total"+label]
	}
	if done != n {
		t.Errorf("workers did %v, want %d:\n%s", done, n, body)
	}
	if _, ok := e.typ["gridmesh_worker_capacity"]; ok {
		t.Error("a gateway node exposes worker families")
	}

	resp, body = httpGet(t, c.names[0]+gateway.StatsPath)
	var st gateway.NodeStats
	if err := json.Unmarshal([]byte(body), &st); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("stats: %v %q", err, body)
	}
	if st.Gateway == nil || st.Gateway.Sent != n || st.Dispatch == nil || len(st.Dispatch.Workers) != 2 || st.Worker != nil || st.Processes != nil {
		t.Fatalf("stats: %s", body)
	}

	req, _ := http.NewRequest(http.MethodPost, c.names[0]+gateway.MetricsPath, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	pool := startPool(t, "serve", gateway.ProcessConfig{Processes: 2, InFlight: 3})
	runTx(t, pool, `{"seq":1}`)
	rec := httptest.NewRecorder()
	(&gateway.Metrics{Processes: pool}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, gateway.MetricsPath, nil))
	e = parseExposition(t, rec.Body.String())
	for series, want := range map[string]float64{
		"gridmesh_worker_processes": 2, "gridmesh_worker_processes_running": 2, "gridmesh_worker_process_starts_total": 2,
		"gridmesh_worker_process_wedged_total": 0, "gridmesh_worker_process_in_flight": 0,
	} {
		if got, ok := e.samples[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if _, ok := e.typ["gridmesh_gateway_sent_total"]; ok {
		t.Error("a worker's pool exposes gateway families")
	}
}
