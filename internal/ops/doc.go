// Package ops is the operations port of a gridmesh node, apart from its
// grid port: /metrics (Prometheus, through client_golang), /healthz and
// /readyz (Kubernetes probes), /stats (the node's stats as JSON, what
// `gridmesh status` reads) and, when enabled, /debug/pprof/. An optional
// bearer token guards everything but the two probes.
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
