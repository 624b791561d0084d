// Package streamtest holds the stream handlers and test helpers that the
// tests and benchmarks of several gridmesh packages share: echo handlers in
// both stream-handler forms, bounded reads of a stream's Responses, and a
// latency summary.
package streamtest
