package grid

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestStatsHandler reads a connected node's stats as an operator would.
func TestStatsHandler(t *testing.T) {
	lns, names := listen(t, 2)
	a := startNode(t, lns[0], baseOptions(names[0], names))
	b := startNode(t, lns[1], baseOptions(names[1], names))
	ctx := testCtx(t)
	must(t, a.m.WaitForConnect(ctx))
	must(t, b.m.WaitForConnect(ctx))
	must(t, a.call(ctx, names[1], "x"))

	rec := httptest.NewRecorder()
	a.m.StatsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DefaultStatsPath, nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var st ManagerStats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	peer, ok := st.Peers[names[1]]
	if st.Local != names[0] || st.Connected != 1 || !ok || peer.State != StateConnected || peer.RequestsOut != 1 || peer.BytesOut == 0 {
		t.Fatalf("stats: %s", rec.Body)
	}

	rec = httptest.NewRecorder()
	a.m.StatsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, DefaultStatsPath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d, want 405", rec.Code)
	}
	var s State
	if err := s.UnmarshalText([]byte("bogus")); err == nil {
		t.Fatal("UnmarshalText accepted an unknown state")
	}
}
