package grid

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMetricsHandler scrapes a connected node and checks the exposition:
// every family has HELP and TYPE, and the peer's series carry its state
// and the request just made.
func TestMetricsHandler(t *testing.T) {
	d, a, _ := pair(t, nil)
	ctx := testCtx(t)
	must(t, d.call(ctx, a.name, "x"))

	rec := httptest.NewRecorder()
	d.m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DefaultMetricsPath, nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	series := map[string]string{}
	help, typ := map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		switch f := strings.Fields(line); {
		case strings.HasPrefix(line, "# HELP "):
			help[f[2]] = true
		case strings.HasPrefix(line, "# TYPE "):
			typ[f[2]] = true
		default:
			if len(f) != 2 {
				t.Fatalf("malformed sample %q", line)
			}
			series[f[0]] = f[1]
		}
	}
	if len(help) != len(metrics) || len(typ) != len(metrics) {
		t.Errorf("%d HELP and %d TYPE lines for %d families", len(help), len(typ), len(metrics))
	}
	label := `{peer="` + a.name + `"}`
	for name, want := range map[string]string{
		"gridmesh_peer_up": "1", "gridmesh_peer_connects_total": "1", "gridmesh_peer_requests_sent_total": "1",
		"gridmesh_peer_requests_in_flight": "0", "gridmesh_peer_streams_opened": "0",
	} {
		if got := series[name+label]; got != want {
			t.Errorf("%s%s = %q, want %q\n%s", name, label, got, want, rec.Body)
		}
	}
	if series["gridmesh_peer_bytes_sent_total"+label] == "0" {
		t.Error("no bytes sent counted")
	}

	rec = httptest.NewRecorder()
	d.m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, DefaultMetricsPath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d, want 405", rec.Code)
	}
}
