package ops_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/internal/ops"
)

// TestPage: with Mesh, / serves the status page without the token (it
// holds no data) and /mesh serves Mesh's JSON behind it; the page loads
// nothing from elsewhere, and its CSP allows exactly its inline style and
// script.
func TestPage(t *testing.T) {
	srv := start(t, ops.Options{
		Token: "s3cret",
		Mesh: func(ctx context.Context) any {
			if ctx.Err() != nil {
				t.Error("Mesh called with a dead context")
			}
			return map[string]string{"from": "here"}
		},
	})
	req, err := http.NewRequest(http.MethodGet, "http://"+srv.Addr().String()+ops.PagePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("page: %d, %q, CSP %q", resp.StatusCode, resp.Header.Get("Content-Type"), csp)
	}
	code, body := get(t, srv, ops.PagePath, "")
	if code != 200 || strings.Contains(body, "s3cret") {
		t.Fatalf("page without the token: %d", code)
	}
	// Nothing from elsewhere: no URL with a scheme or a protocol-relative
	// one in a src, href or fetch; the script fetches "mesh" relative to
	// the page.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindString(body); m != "" {
		t.Errorf("the page loads from elsewhere: %q", m)
	}
	if !strings.Contains(body, `fetch("mesh"`) {
		t.Error("the page does not poll mesh")
	}
	for _, part := range []struct{ tag, src string }{{"style", "style-src"}, {"script", "script-src"}} {
		m := regexp.MustCompile(`(?s)<`+part.tag+`>(.*?)</`+part.tag+`>`).FindAllStringSubmatch(body, -1)
		if len(m) != 1 {
			t.Fatalf("%d inline %s elements, want 1", len(m), part.tag)
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		if want := part.src + " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if code, _ := get(t, srv, ops.MeshPath, ""); code != http.StatusUnauthorized {
		t.Errorf("mesh without the token: %d, want 401", code)
	}
	code, body = get(t, srv, ops.MeshPath, "s3cret")
	var got map[string]string
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got["from"] != "here" {
		t.Errorf("mesh: %d %q", code, body)
	}
	for _, p := range []string{"/index.html", "/nowhere", ops.PagePath + "page/status.js"} {
		if code, _ := get(t, srv, p, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", p, code)
		}
		if code, _ := get(t, srv, p, "s3cret"); code != http.StatusNotFound {
			t.Errorf("%s with the token: %d, want 404", p, code)
		}
	}
}

// TestNoPage: without Mesh, neither the page nor /mesh is served, and /
// wants the token like any other path.
func TestNoPage(t *testing.T) {
	srv := start(t, ops.Options{Token: "s3cret"})
	if code, _ := get(t, srv, ops.PagePath, ""); code != http.StatusUnauthorized {
		t.Errorf("/ without Mesh, without the token: %d, want 401", code)
	}
	for _, p := range []string{ops.PagePath, ops.MeshPath} {
		if code, _ := get(t, srv, p, "s3cret"); code != http.StatusNotFound {
			t.Errorf("%s without Mesh: %d, want 404", p, code)
		}
	}
}
