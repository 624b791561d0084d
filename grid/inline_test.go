package grid

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
)

var hInline = handlers.New(143, "grid-inline") // answers "inline:<payload>" on the reader

// TestInlineHandler: a handler registered inline on a node answers its
// peers, and the node counts the requests served inline in its stats,
// their JSON and its metrics.
func TestInlineHandler(t *testing.T) {
	d, a, _ := pair(t, nil)
	must(t, a.m.RegisterInlineHandler(hInline, func(_ context.Context, p []byte) ([]byte, error) {
		return append([]byte("inline:"), p...), nil
	}))
	ctx := testCtx(t)
	for _, p := range []string{"x", "y", "z"} {
		out, err := d.m.Connection(a.name).Request(ctx, hInline, []byte(p))
		if err != nil || string(out) != "inline:"+p {
			t.Fatalf("got %q, %v", out, err)
		}
	}
	if st := a.m.Connection(d.name).Stats(); st.ServedInline != 3 || st.Served != 3 {
		t.Fatalf("served %d, inline %d; want 3 and 3", st.Served, st.ServedInline)
	}

	rec := httptest.NewRecorder()
	a.m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DefaultMetricsPath, nil))
	want := `gridmesh_peer_requests_served_inline_total{peer="` + d.name + `"} 3`
	if !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("metrics lack %q:\n%s", want, rec.Body)
	}

	b, err := json.Marshal(a.m.Connection(d.name).Stats())
	if err != nil {
		t.Fatal(err)
	}
	var back ConnectionStats
	if err := json.Unmarshal(b, &back); err != nil || back.ServedInline != 3 || !strings.Contains(string(b), `"served_inline":3`) {
		t.Fatalf("JSON %s: back %d, %v", b, back.ServedInline, err)
	}
}
