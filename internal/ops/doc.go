// Package ops is the operations port of a gridmesh node, apart from its
// grid port: /metrics (Prometheus, through client_golang), /healthz and
// /readyz (Kubernetes probes), /stats (the node's stats as JSON, what
// `gridmesh status` reads), the status page at / with the JSON it polls
// at /mesh (the whole mesh as this node gathers it over the grid) and,
// when enabled, /debug/pprof/. An optional bearer token guards everything
// but the two probes and the page.
//
// # The status page
//
// The page is one embedded HTML document with its style and script
// inline; it loads nothing from anywhere (its Content-Security-Policy
// allows only its own inline style and script, by hash, and fetches from
// this port), and holds no data: its script polls /mesh about every
// second and draws the nodes, the nodes × peers matrix and the gateway's
// pipeline. A browser that opens the page cannot send a header, so the
// page itself is served without the token, and the token reaches the
// script in the address's fragment, which browsers never send to a server
// nor put in a Referer (https://node:9100/#token=TOKEN), or in the page's
// form. The script moves it at once into the tab's session storage and
// replaces the address with one without the fragment, so that the token
// stays neither in the address bar nor in the tab's back and forward
// history (a browser may still record the address it opened in its
// global history; the form avoids even that). It sends the token on each
// poll as "Authorization: Bearer TOKEN". Without it (or with a wrong
// one), /mesh answers 401 and the page asks for the token.
//
// One gathering of the mesh (Options.Mesh) answers every request for
// /mesh that arrives while it runs and for Options.MeshReuse after it (by
// default half a second), so that pages and tabs polling one node do not
// each call every peer.
//
// The library packages (grid, gateway, gateway/worker) write their own
// Prometheus text; TextCollector turns such a writer into a
// prometheus.Collector, so that one registry serves them beside the Go
// runtime's and the process's collectors and gridmesh_build_info, under
// the names the libraries give.
//
// A Server owns one goroutine, its HTTP server's, which Close ends and
// waits for. Its methods may be called concurrently.
package ops
