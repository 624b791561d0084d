package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/grid"
)

// oddMeshes are answers of /mesh the CLI must print without failing:
// each with the exit status it must give and what the output must hold.
var oddMeshes = []struct {
	name, body string
	code       int
	want       []string
}{
	{"up without stats", `{"from": "http://a:1", "nodes": [
		{"host": "http://a:1", "self": true, "up": true, "stats": {"host": "http://a:1", "grid": {"connected": 1, "peers": {"http://b:2": {"state": "connected"}}}}},
		{"host": "http://b:2", "up": true, "older_version": true, "stats_error": "no stats handler (an older version)"},
		{"host": "http://c:3", "up": true, "stats_error": "its stats handler failed"}]}`,
		0, []string{"3 nodes, 3 up", "up, no stats (older version)", "up, no stats  ", "no stats handler (an older version)", "its stats handler failed"}},
	{"one down", `{"from": "http://a:1", "nodes": [{"host": "http://a:1", "up": true}, {"host": "http://b:2", "error": "connecting"}]}`,
		1, []string{"2 nodes, 1 up", "down", "connecting"}},
	{"nulls", `{"from": "x", "nodes": [null, {"host": null, "stats": null}, {"host": "h", "up": true, "stats": {"grid": null, "sections": null, "section_errors": null}}]}`,
		1, []string{"3 nodes, 1 up"}},
	{"null sections", `{"from": "x", "nodes": [{"host": "h", "up": true, "stats": {"sections": {"gateway": null, "dispatch": null, "worker": null, "processes": null, "x": {}}}}]}`,
		0, []string{"1 nodes, 1 up", "gateway"}},
	{"sections of other shapes", `{"from": "x", "nodes": [{"host": "h", "up": true, "stats": {"sections": {"gateway": {"tx_latency": {"p50": 1}}, "dispatch": {"workers": [null, {}]}, "processes": {}}}},
		{"host": "w", "up": false}]}`,
		1, []string{"1 of 2 nodes down"}},
	{"made-up peers", `{"from": "x", "nodes": [{"host": "h", "up": true, "peers_left_out": 2, "stats": {"grid": {"peers": {"http://made-up:1": {}, "http://made-up:2": {}}}}}]}`,
		0, []string{"2 peers not in this node's hosts left out"}},
	{"escape sequences", `{"from": "x", "nodes": [{"host": "h\u001b[2J", "error": "\u001b]0;owned\u0007\u009b31m"}]}`,
		1, []string{"h\uFFFD[2J"}},
	{"no nodes", `{"from": "x", "nodes": null}`, 0, []string{"0 nodes, 0 up"}},
}

// TestStatusMeshOddAnswers: `gridmesh status -mesh` prints any answer of
// the shape /mesh may serve, never panicking: a node up without stats (a
// node of an older version) is shown as such and is no failure, only a
// node down makes it exit 1; nulls, sections of other shapes and control
// characters meant for the terminal are printed harmlessly.
func TestStatusMeshOddAnswers(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	for _, tc := range oddMeshes {
		t.Run(tc.name, func(t *testing.T) {
			body = tc.body
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"status", "-mesh", srv.URL}, &out, &errOut)
			text := out.String() + errOut.String()
			if code != tc.code {
				t.Errorf("exit %d, want %d:\n%s", code, tc.code, text)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("the output lacks %q:\n%s", w, text)
				}
			}
			if strings.ContainsAny(out.String(), "\x1b\x07\u009b") {
				t.Errorf("control characters reach the terminal: %q", out.String())
			}
		})
	}
}

// FuzzPrintMesh: whatever JSON decodes as a mesh prints without panicking
// and without control characters but newlines and tabs.
func FuzzPrintMesh(f *testing.F) {
	for _, tc := range oddMeshes {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ms grid.MeshStats
		if json.Unmarshal(b, &ms) != nil {
			return
		}
		var out bytes.Buffer
		printMesh(&out, ms)
		for _, r := range terminalSafe(out.String()) {
			if r < ' ' && r != '\n' && r != '\t' || r >= 0x7f && r < 0xa0 {
				t.Fatalf("control character %U in %q", r, out.String())
			}
		}
	})
}
