// Package grid connects every node of a cluster to every other node over
// one long-lived, two-way WebSocket per pair, and lets both ends call each
// other's handlers over it: single requests and two-way streams.
//
// Each node creates a Manager with its own name and the names of its
// peers (URLs such as "http://10.0.0.1:9000"; two nodes connect when each
// lists the other, so lists may differ while membership changes),
// registers its handlers on it, and mounts Manager.Handler at
// Options.RoutePath on its HTTP server. A Manager dials its peers as soon
// as NewManager returns, so handlers that a peer may call at once belong
// in Options.Registry, filled before NewManager; those registered later
// on the Manager are found from then on. Manager.Connection(host) returns
// the Connection to a peer; Connection.Request calls a handler there, and
// Connection.NewStream opens a stream to one.
//
// # Connections
//
// For each pair exactly one side dials, chosen by ShouldDial from the two
// names alone (a hash of the pair), so both sides agree without talking
// even when their host lists differ, and every node dials about half of
// its peers. The handshake rides on the WebSocket upgrade request: the
// dialer sends both names, a timestamp, a random nonce, its per-process
// instance ID and a hash of its host list, signed by the Authenticator (by
// default HMAC-SHA256 with a shared secret, which never crosses the wire).
// The acceptor checks the names (the dialer must be in its list, and it
// dials only peers in its own), the dial side, the clock skew
// (Options.ClockSkew), the proof and that the nonce is fresh; a different
// host list is no refusal. It then answers with its own instance ID and a proof
// over the dialer's nonce, which the dialer verifies: both ends are
// authenticated. A refusal is an HTTP 400, 401, 403, 409 (wrong dial side) or 503 with the
// reason as plain text, after which the acceptor closes the connection;
// the dialer logs each distinct reason once and keeps retrying, with
// exponential backoff and jitter, forever.
//
// Strangers can reach the port but not exhaust the node: a Node (StartNode,
// ListenNode) gives every connection that is not yet a grid session
// Options.HandshakeTimeout for each request, its answer and any idle time
// between requests, and holds at most Options.MaxPendingConns of them,
// closing the oldest silent one when another arrives; at most as many
// handshakes are checked at once. Once upgraded, a session is no longer
// timed by the HTTP server: its pings watch it.
//
// A session from a peer that arrives while an older one is still up
// replaces it, and a changed instance ID is logged as a restarted peer;
// so a restart is noticed even when the peer reconnects at once. Every
// call in flight on a lost or replaced session fails at once with
// ErrDisconnected, and calls on a connection that is down fail at once
// with ErrDisconnected; Connection.WaitForConnect waits for it to come up.
//
// Both ends ping each other every Options.PingInterval; a ping without a
// pong within Options.PingTimeout closes the session, so a peer that went
// silent without closing its socket (a half-open connection), or stopped
// (SIGSTOP, a frozen VM), is detected within PingInterval + PingTimeout.
// A late pong is forgiven only while the peer keeps showing life of its
// own: acknowledging that it has read more of our bytes (mux OpAck), or
// sending us at least 16 KiB; the peer is declared dead once PingTimeout
// passes with neither. Bytes we send are no proof, whatever their amount:
// a stopped process's kernel keeps accepting them. A live peer that reads a
// large message slowly, its pong queued behind it, keeps acknowledging
// and stays connected.
//
// # Membership
//
// Manager.SetHosts changes the host list while the mesh runs: new peers
// are dialed or awaited at once; a peer left out leaves Connections at
// once, new calls to it fail at once with ErrPeerRemoved, and its session
// stays only until the calls and streams in flight (both ways) are done,
// or Options.RemoveGrace passes, after which calls still in flight fail
// with ErrPeerRemoved (which also matches ErrDisconnected) and its
// Connection reaches StateRemoved, final. Manager.MembershipChanged wakes
// those who follow the membership (the gateway's Dispatcher) without
// polling. Since the dial side depends on the pair alone, nodes whose
// lists differ during a rolling change still connect wherever both list
// each other; a node that is not listed is refused (403).
//
// Handlers never hold a connection down. When a session ends, its
// handlers' contexts are cancelled and the connection is replaced without
// waiting for them; a handler that ignores its context runs on, its
// answer is dropped, and ConnectionStats.OrphanedHandlers (the metric
// gridmesh_peer_handlers_orphaned) counts it until it returns. Only
// Manager.Close waits for it.
//
// Sockets are tuned so that the mux's interleaving reaches the wire: the
// kernel may hold at most Options.UnsentLimit unsent bytes per connection
// (TCP_NOTSENT_LOWAT), so a small request waits behind at most that much of
// a large message rather than a whole socket buffer. Each batch of mux
// frames is one WebSocket message written with one system call: the
// connection under the WebSocket gathers the library's 4 KiB buffer
// flushes while a message is written (up to 128 KiB at a time), and, once
// a read filled the library's 4 KiB, reads ahead up to 64 KiB in one call.
// Both buffers are pooled and held only while in use (except that a read
// which exactly filled its buffer may, if the peer then goes quiet, wait
// holding the read-ahead buffer until the next message).
//
// What a peer, even a hostile one past the handshake, can make a
// connection hold is bounded by Options.Mux (see mux's doc, "Memory"):
// Options.Mux.MemoryBound() for the session, plus these two buffers and
// the WebSocket library's and TLS's (under 256 KiB in all). The defaults
// bound it at about 1.25 GiB per connection, most of it for MaxConcurrent
// handlers and MaxStreams streams in each direction; lower those (and the
// byte bounds MaxRequestBytes, MaxResponseBytes and MaxStreamBytes) for a
// node with many peers.
//
// # Streams
//
// Manager.RegisterStreamHandler registers a stream handler with its input
// and output capacities; Connection.NewStream opens a stream to it on the
// peer and learns the capacities from the peer's answer. Streams share the
// connection's session with requests but never hold it up: flow control
// is per stream (credit, counted in messages), and large messages travel
// in chunks that interleave with other traffic, so a stream whose reader
// stalls only stalls itself. Cancelling the caller's context, or its
// deadline, ends the stream and the handler's context. A stream lives on
// one session: when the connection is lost or replaced, every open stream
// ends at once with ErrDisconnected and every handler's context on both
// sides is cancelled; a new stream must be opened after the reconnect.
// Streams have no keep-alive of their own: the connection's pings detect
// a vanished peer (within PingInterval + PingTimeout), and a stream that is
// idle or blocked stays open as long as the connection does.
// Options.Mux.MaxStreams bounds the streams open at once on a connection
// in each direction; ConnectionStats counts them (StreamsOut, StreamsIn).
// Typed stream handlers (handlers.TypedStream) open streams through
// Connection.OpenStream.
//
// # Stats of the whole mesh
//
// Every Manager serves its node's stats to its peers on a reserved
// handler ID, HandlerStats (4095, "grid-stats", the largest ID): the
// grid's stats (Manager.Stats: each peer's state, RTT, bytes and
// messages, errors, reconnects) and named sections the application adds
// (Manager.SetStatsSection, e.g. the gateway's pipeline), as JSON
// (NodeStats). JSON rather than msgp, because sections are whatever the
// application encodes and the operations port serves JSON anyway. The
// answer is bounded: the grid's part grows with the peers (a bounded
// set), each section is cut at MaxStatsSectionBytes, and the whole at
// 1 MiB; a section that does not answer within half of PingTimeout is
// reported as an error and does not hold the answer up.
//
// The ID is reserved in two ways. Handler names are per process (see
// package handlers), and package grid names 4095 "grid-stats" when it
// initialises: a program that imports grid and calls handlers.New(4095,
// name) with another name panics at start-up, like a flag defined twice.
// A Registry given to NewManager that holds 4095 is refused with an error
// naming the Registry field. Either way, the program's handler needs
// another ID. (The panic is handlers.New's rule for every ID, kept here
// rather than worked around: letting a program rename 4095 would label
// the grid's stats calls with its name in logs and metrics.)
//
// Manager.MeshStats calls every peer's stats handler at once, each within
// PingTimeout, and lists every node of the membership, a node that is
// down or silent included, with why it did not answer; so any one node
// shows the whole mesh (the gridmesh command's status page and `gridmesh
// status -mesh`). A node is up when its connection is up and it answers
// in time; one that answers without its stats, such as a node of an
// older version (no stats handler, during a rolling upgrade), is up with
// MeshNode.StatsError. The gatherer checks what each peer answers against
// the same bounds the peer should have kept (a peer may run another
// version, or be buggy or hostile): an answer over 1 MiB is refused,
// sections are cut again, texts clipped, and only the peers in the
// gatherer's own membership are kept, so the whole holds about 1 MiB a
// node at most and the nodes × peers matrix has one column a node.
//
// # Interceptors
//
// Options.ClientInterceptors, ServerInterceptors, ClientStreamInterceptors
// and ServerStreamInterceptors wrap every call on every connection, in
// order, the first outermost (see package mux, Interceptors): they see
// the handler (its ID; String gives its name), the peer's host
// (CallInfo.Peer, on both sides), the context and the outcome, and may
// refuse a call, for per-handler authorization, logging or metrics of
// one's own. The lists in Options.Mux run inside them. A trace context
// put in a call's context with mux.WithTraceContext crosses the hop.
//
// # Tracing
//
// With Options.TracerProvider set, every call is traced with
// OpenTelemetry (package grid/gridotel): a client span on the caller and
// a server span on the peer, named "gridmesh/<handler name>", with
// rpc.system "gridmesh", rpc.method the handler's name, the peer's
// address, and status Error on failure. The W3C trace context crosses the
// hop in the mux frame (mux SPEC.md, TRACE), so the server span is the
// client span's child in the same trace, and it is the span in the
// handler's context: trace.SpanFromContext(ctx) in a handler returns it,
// and the handler's own spans and onward calls become its children. A
// stream's client span lasts until the stream ends. Without a
// TracerProvider nothing is traced and nothing is added to a call.
//
// # Metrics
//
// Every Manager counts its calls per handler, on both sides, unless
// Options.DisableMetrics is set; Manager.Collector returns them as a
// prometheus.Collector to register in any registry (the gridmesh command
// serves them on its /metrics). Package grid/gridmetrics counts, with
// labels side ("client" or "server"), handler (the name) and handler_id:
//
//	gridmesh_rpc_calls_total               calls begun
//	gridmesh_rpc_errors_total{kind}        calls failed, by mux.ErrorKind
//	gridmesh_rpc_duration_seconds          histogram: round trip; arrival to handler return; stream life
//	gridmesh_rpc_streams_opened_total      streams opened or served
//	gridmesh_rpc_streams_active            streams open now
//	gridmesh_rpc_stream_messages_total{direction}  stream messages in and out
//
// and the Manager adds, per current peer (label peer):
//
//	gridmesh_peer_ping_rtt_seconds         histogram of the liveness pings' round trips
//	gridmesh_peer_reconnects_total         sessions established after the first
//
// Nothing is labelled per call; a call's series are resolved once per
// handler, so counting costs a call no allocation. MetricsHandler's
// per-peer counters (gridmesh_peer_up, bytes, frames, …) are apart from
// the Collector, as before.
//
// # Concurrency
//
// All methods of Manager and Connection may be called concurrently,
// SetHosts included (with calls in flight, and with Close). A
// Manager owns every goroutine it starts (a drain per removed peer,
// until it reaches StateRemoved, a dial loop per dialed peer, a
// keep-alive loop per live connection, on the dial loop's goroutine or on
// one started for an accepted session, and each mux session's goroutines,
// including one per ended session that waits for its orphaned handlers),
// and Close waits for all of them. State changes are reported to
// Options.OnStateChange in order, one connection at a time, and wake the
// readers of Connection.StateChanged, which code that gets a Manager
// already built (such as the gateway's Dispatcher) uses to react to
// connects and disconnects without polling.
package grid
