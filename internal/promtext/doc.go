// Package promtext writes metrics in the Prometheus text exposition format
// (version 0.0.4) without a Prometheus library: the one writer that the
// grid's per-peer metrics, the gateway's and the worker's share.
//
// A Family reads one value from a part's stats; WriteFamilies writes a
// family per value, WriteLabelled one series per labelled row. Handler
// serves a writer over HTTP GET. A Histogram counts observations in fixed
// buckets, lock-free, and WriteHistogram writes it as a Prometheus
// histogram. Everything here is safe for concurrent use; only a Histogram
// keeps state.
package promtext
