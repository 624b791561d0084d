package grid

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"
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
	checkSnakeCase(t, rec.Body.Bytes())

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

// snakeCase is the form of every field name of the stats' JSON.
var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// checkSnakeCase checks that every object key in the JSON doc is in
// snake_case, the keys of "peers" (host URLs) excepted, and that the
// round trip carries its unit.
func checkSnakeCase(t *testing.T, doc []byte) {
	t.Helper()
	var v map[string]any
	must(t, json.Unmarshal(doc, &v))
	var walk func(path string, v any)
	walk = func(path string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, sub := range m {
			if path != "peers" && !snakeCase.MatchString(k) {
				t.Errorf("field %q under %q is not snake_case", k, path)
			}
			walk(k, sub)
		}
	}
	walk("", v)
	for _, p := range v["peers"].(map[string]any) {
		if _, ok := p.(map[string]any)["last_rtt_seconds"]; !ok {
			t.Errorf("peer stats without last_rtt_seconds: %v", p)
		}
	}
}

// TestStatsJSONRoundTrip: what MarshalJSON writes, UnmarshalJSON reads
// back unchanged.
func TestStatsJSONRoundTrip(t *testing.T) {
	cs := ConnectionStats{
		Host: "http://a:1", State: StateConnected, Dials: true, PeerInstance: "i", Connects: 3, Reconnects: 2,
		LastConnect: time.Unix(1700000000, 0).UTC(), LastRTT: 1500 * time.Microsecond, LastError: "e",
	}
	cs.BytesIn, cs.QueuedBytes, cs.StreamsIn = 10, 20, 3
	in := ManagerStats{Local: "http://b:1", Connected: 1, Reconnects: 2, Peers: map[string]ConnectionStats{cs.Host: cs}}
	in.Stats = cs.Stats
	b, err := json.Marshal(in)
	must(t, err)
	var out ManagerStats
	must(t, json.Unmarshal(b, &out))
	if out.Local != in.Local || out.Stats != in.Stats || out.Peers[cs.Host] != cs {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	checkSnakeCase(t, b)
}
