package ops

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
)

// The status page's parts, assembled into one HTML document with its
// style and script inline: it loads nothing else.
//
//go:embed page/status.html page/status.css page/status.js
var pageFiles embed.FS

// statusPage is the page's HTML and the Content-Security-Policy that lets
// its inline style and script run, by their hashes, and nothing else but
// fetches from this port.
type statusPage struct {
	html []byte
	csp  string
}

// page assembles the status page once.
var page = sync.OnceValue(func() statusPage {
	read := func(name string) string {
		b, err := pageFiles.ReadFile("page/" + name)
		if err != nil {
			panic(err) // embedded: cannot fail
		}
		return string(b)
	}
	css, js := read("status.css"), read("status.js")
	html := strings.NewReplacer("@STYLE@", css, "@SCRIPT@", js).Replace(read("status.html"))
	return statusPage{
		html: []byte(html),
		csp: "default-src 'none'; script-src " + cspHash(js) + "; style-src " + cspHash(css) +
			"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	}
})

// cspHash is the CSP source expression of an inline element's text.
func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// pageHandler serves the status page. The page holds no data: it asks
// MeshPath for it, with the bearer token it keeps in the tab's session
// storage (see the package doc).
func pageHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p := page()
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", p.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(p.html)
	})
}
