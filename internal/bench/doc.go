// Package bench holds the comparison baselines that gridmesh's benchmarks run
// side by side with gridmesh in the same process, the gridmesh pairs to run
// against them, a small closed-loop load generator and memory probes. The
// `gridmesh bench` command and the Benchmark functions of this package's
// tests both drive them.
//
// Every pair is a server and a client connected over TCP loopback
// (127.0.0.1) inside the current process:
//
//   - [NewGrid], [NewGridStream]: gridmesh as a cluster runs it: two grid
//     nodes (a grid.Manager each, on its own HTTP server) joined by their
//     authenticated WebSocket connection, serving an echo handler and an
//     echo stream handler. [IdleGridConnBytes] measures their idle
//     connections with the nodes themselves in the baseline.
//   - [NewMux], [NewMuxStream]: the same handlers on two gridmesh mux
//     sessions over a plain TCP connection, without the WebSocket.
//   - [NewGRPCUnary]: stock grpc-go with a unary echo method, a hand-written
//     service descriptor and a raw-bytes codec (no protobuf), one ClientConn.
//   - [NewGRPCStream]: the same server, exposing a bidirectional echo stream.
//   - [NewRawWS]: a minimal request/response multiplexer over raw
//     github.com/coder/websocket (request id + payload, one batching writer
//     and one reader per side). It is the practical floor for any multiplexer
//     built on that WebSocket library.
//   - [NewGridBidi], [NewMuxBidi], [NewGRPCBidi], [NewRawWSBidi]: two nodes that call each
//     other at once, each call in a random direction; gridmesh does it on one
//     connection, the others need a connection per direction.
//
// Pairs implement [Pair] (unary round trips) or [Streamer] (bidi echo
// streams). [Run] drives any [Caller] with a fixed number of concurrent
// closed-loop callers and reports throughput, latency percentiles and
// allocations per op; [StreamCaller] makes a whole stream one op, and
// [RunLongStream] measures one long pipelined stream. [IdleConnBytes] and
// [IdleStreamBytes] measure the memory of idle connections and streams.
package bench
