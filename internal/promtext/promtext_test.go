package promtext_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/internal/promtext"
)

type peer struct {
	host string
	up   bool
	n    int
}

var families = []promtext.Family[peer]{
	promtext.Gauge("x_up", "1 while up.", func(p peer) float64 { return promtext.Bool(p.up) }),
	promtext.Counter("x_calls_total", "Calls.", func(p peer) float64 { return float64(p.n) }),
}

func TestWriteLabelledEscapes(t *testing.T) {
	var b strings.Builder
	rows := []peer{{"a", true, 3}, {"b\"\\\n", false, 0}}
	promtext.WriteLabelled(&b, families, "peer", rows, func(p peer) string { return p.host })
	want := "# HELP x_up 1 while up.\n# TYPE x_up gauge\n" +
		"x_up{peer=\"a\"} 1\nx_up{peer=\"b\\\"\\\\\\n\"} 0\n" +
		"# HELP x_calls_total Calls.\n# TYPE x_calls_total counter\n" +
		"x_calls_total{peer=\"a\"} 3\nx_calls_total{peer=\"b\\\"\\\\\\n\"} 0\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestWriteFamilies(t *testing.T) {
	var b strings.Builder
	promtext.WriteFamilies(&b, families, peer{up: true, n: 7})
	for _, line := range []string{"x_up 1\n", "x_calls_total 7\n", "# TYPE x_calls_total counter\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("missing %q in\n%s", line, b.String())
		}
	}
}

func TestHandlerMethods(t *testing.T) {
	h := promtext.Handler(promtext.ContentType, func(w io.Writer) { io.WriteString(w, "x 1\n") })
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		method string
		code   int
		body   string
	}{{http.MethodGet, 200, "x 1\n"}, {http.MethodHead, 200, ""}, {http.MethodPost, 405, "method not allowed\n"}} {
		req, err := http.NewRequest(tc.method, srv.URL+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || string(body) != tc.body {
			t.Errorf("%s: got %d %q, want %d %q", tc.method, resp.StatusCode, body, tc.code, tc.body)
		}
		if tc.code == 200 && resp.Header.Get("Content-Type") != promtext.ContentType {
			t.Errorf("%s: Content-Type %q", tc.method, resp.Header.Get("Content-Type"))
		}
		if tc.code == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("405 without Allow: %q", resp.Header.Get("Allow"))
		}
	}
	srv.Client().CloseIdleConnections()
}

func ExampleWriteLabelled() {
	type conn struct {
		peer string
		rtt  float64
	}
	fs := []promtext.Family[conn]{
		promtext.Gauge("demo_rtt_seconds", "Last round trip.", func(c conn) float64 { return c.rtt }),
	}
	promtext.WriteLabelled(os.Stdout, fs, "peer", []conn{{"http://n1:9000", 0.0012}}, func(c conn) string { return c.peer })
	// Output:
	// # HELP demo_rtt_seconds Last round trip.
	// # TYPE demo_rtt_seconds gauge
	// demo_rtt_seconds{peer="http://n1:9000"} 0.0012
}

func TestJSONHandler(t *testing.T) {
	n := 0
	h := promtext.JSONHandler(func() map[string]int { n++; return map[string]int{"calls": n} })
	srv := httptest.NewServer(h)
	defer srv.Close()
	for want := 1; want <= 2; want++ {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Content-Type") != "application/json" || string(body) != fmt.Sprintf("{\n  \"calls\": %d\n}\n", want) {
			t.Fatalf("got %q %q", resp.Header.Get("Content-Type"), body)
		}
	}
	srv.Client().CloseIdleConnections()
}
