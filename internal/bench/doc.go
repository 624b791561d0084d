// Package bench holds the comparison baselines that gridmesh's benchmarks run
// side by side with gridmesh in the same process, plus a small closed-loop
// load generator.
//
// Every baseline is a server and a client connected over TCP loopback
// (127.0.0.1) inside the current process:
//
//   - [NewGRPCUnary]: stock grpc-go with a unary echo method, a hand-written
//     service descriptor and a raw-bytes codec (no protobuf), one ClientConn.
//   - [NewGRPCStream]: the same server, exposing a bidirectional echo stream.
//   - [NewRawWS]: a minimal request/response multiplexer over raw
//     github.com/coder/websocket (request id + payload, one batching writer
//     and one reader per side). It is the practical floor for any multiplexer
//     built on that WebSocket library.
//
// Baselines implement [Pair] (unary round trips) or [Streamer] (bidi echo
// streams), so gridmesh's own mux can be plugged into the same benchmarks.
// [Run] drives any [Caller] with a fixed number of concurrent closed-loop
// callers and reports throughput and latency percentiles.
package bench
