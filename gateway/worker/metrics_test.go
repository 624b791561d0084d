package worker_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestPoolMetrics scrapes a worker's process pool's metrics after a
// transaction.
func TestPoolMetrics(t *testing.T) {
	pool := startPool(t, "serve", worker.ProcessConfig{Processes: 2, InFlight: 3})
	runTx(t, pool, `{"seq":1}`)
	rec := httptest.NewRecorder()
	(&worker.Metrics{Processes: pool}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, worker.MetricsPath, nil))
	e := testutil.ParseExposition(t, rec.Body.String())
	for series, want := range map[string]float64{
		"gridmesh_worker_processes": 2, "gridmesh_worker_processes_running": 2, "gridmesh_worker_process_starts_total": 2,
		"gridmesh_worker_process_wedged_total": 0, "gridmesh_worker_process_in_flight": 0,
	} {
		if got, ok := e.Samples[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if _, ok := e.Type["gridmesh_gateway_sent_total"]; ok {
		t.Error("a worker's pool exposes gateway families")
	}
}
