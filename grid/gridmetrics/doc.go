// Package gridmetrics counts the calls of mux sessions (and so of a grid)
// per handler, on both sides, as Prometheus metrics: calls, errors by
// kind and a latency histogram for every handler; streams opened, active
// and their messages for stream handlers. Its Metrics is a
// prometheus.Collector, to register in any registry; the grid makes one
// per Manager (on by default, grid.Options.DisableMetrics turns it off)
// and Manager.Collector adds the per-peer RTT histogram and reconnects.
//
// Why client_golang rather than OpenTelemetry metrics: the gridmesh
// command serves one /metrics from a client_golang registry
// (internal/ops), where the Go runtime's and the process's collectors
// already are; a prometheus.Collector registers there and in a library
// user's own registry as it is, while OpenTelemetry metrics would need a
// MeterProvider and an exporter bridge to end up in the same place. A
// user who exports with OpenTelemetry can bridge a Prometheus registry.
//
// Families (label side is "client" or "server"; handler is the handler's
// name, handler_id its ID):
//
//	gridmesh_rpc_calls_total{side,handler,handler_id}          calls begun: requests sent or served,
//	                                                             streams opened or served
//	gridmesh_rpc_errors_total{side,handler,handler_id,kind}    calls that failed, by mux.ErrorKind
//	gridmesh_rpc_duration_seconds{side,handler,handler_id}     histogram: a request's round trip, to its
//	                                                             answer's arrival (client; to Request's
//	                                                             return when client interceptors run, as
//	                                                             with tracing), or from its arrival to its
//	                                                             handler's return (server);
//	                                                             a stream's life from open to end (client)
//	                                                             or its handler's run (server)
//	gridmesh_rpc_streams_opened_total{side,handler,handler_id} streams opened (client) or served (server)
//	gridmesh_rpc_streams_active{side,handler,handler_id}       streams open now
//	gridmesh_rpc_stream_messages_total{side,handler,handler_id,direction}
//	                                                           whole stream messages, direction "in" or "out"
//
// kind is one of handler, panic, unknown, busy, deadline, canceled,
// disconnected, too_large, other (mux.ErrorKinds). Cardinality is
// bounded by the handlers (at most 4095 IDs) times two sides; nothing is
// labelled per call or per peer. A handler's series appear with its first
// call, an error kind's with its first error.
//
// A panic is counted as kind panic: on the serving side mux recovers a
// panic in the handler or in an interceptor inside these and passes it on
// as an error matching mux.ErrHandlerPanic; on the calling side, where a
// panic in an interceptor inside goes on up to the caller, the call is
// recorded (duration and error) as the panic passes.
//
// Requests are counted by Metrics as a mux.RequestObserver
// (mux.Config.Observer), streams by its interceptors and stream hooks.
// The observer is called directly by the session, outside every
// interceptor, rather than as the outermost interceptor: a chain of
// closures, a deferred recover and two clock reads per side cost about a
// tenth of a 512-byte round trip at 64 callers. The session times a
// request with the clock reads it can share: the caller's start, the
// handler's end, and one read per read from the connection, which
// stamps every request and answer it brought (at 64 callers, about 20
// of them). grpc-go's stats handlers, which its OpenTelemetry
// instrumentation moved to from interceptors, are the same idea.
//
// Cost: every series a call touches is resolved once per handler and kept
// in an array indexed by handler ID, so a call costs three atomic adds
// per side, and allocates nothing. Calls and durations are not
// client_golang counters and histograms: each handler and side has its own
// histogram (DurationBuckets, bucket found with bits.Len, sum in integer
// nanoseconds) spread over 8 cache-line-padded stripes. Each P counts on
// one of them, its index kept in a sync.Pool (a per-P cache; after a
// garbage collection empties it, the next index round robin), so that
// callers on different cores seldom write the same line; with more than
// 8 Ps, some share a stripe. A scrape sums the stripes into constant
// metrics. The stripes are read one at a time, not as one snapshot: a scrape during calls may
// count a duration whose sum it does not see yet. A stream is timed by
// its interceptors with two clock reads per side (about 30 ns each on a
// virtual machine). A stream's end on the calling side is counted by a
// quick end hook (mux.Stream.OnEndQuick) taken from a pool, run on the
// goroutine that ends the stream: no allocation and no goroutine either.
//
// All methods may be called concurrently.
package gridmetrics
