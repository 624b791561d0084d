// Package mux multiplexes requests over one ordered, reliable byte pipe.
//
// A Session runs over any io.ReadWriteCloser that delivers bytes in order
// and without loss: a TCP connection, a WebSocket adapted to net.Conn, a
// net.Pipe. It knows nothing about peers, dialing or authentication; the
// grid package adds those. Both ends of a session are equal: each may send
// requests, and each serves the other's requests from its
// handlers.Registry.
//
// The wire format is specified field by field in SPEC.md beside this file.
//
// # Requests
//
// Session.Request sends a payload to a handler on the peer and waits for
// its answer. The caller's deadline travels with the request and becomes
// the handler's context deadline; cancelling the caller's context cancels
// the handler's context. A handler's error, a panic in it, or an unknown
// handler ID come back as a *RemoteError. If the pipe breaks, every request
// in flight fails at once with an error matching ErrDisconnected.
//
// # Streams
//
// Session.NewStream opens a two-way stream to a stream handler on the peer
// and waits for its accept, which carries the capacities the handler was
// registered with. Stream.Requests (or Send) carries the caller's messages,
// Stream.Responses the handler's, ending with the handler's error if it
// returned one. Session.OpenStream opens the same stream without the
// Requests channel (Send and CloseSend instead). Flow control is credit
// per stream, counted in messages, in both directions, and granted back in
// batches, so a stream whose reader stalls stops only its own sender;
// large messages travel in chunks that interleave with other traffic.
// Cancelling the caller's context (or its deadline passing) ends the
// stream and the handler's context; the session's end ends every stream
// with an error matching ErrDisconnected. Streams have no keep-alive of
// their own: an idle or blocked stream lives as long as the session.
// Config.MaxStreams bounds the open streams in each direction, and
// Config.MaxStreamBytes, if set, the bytes their receiving sides may have
// to buffer (capacity × MaxMessageSize per stream).
//
// What a stream costs: the reader delivers messages straight into the
// consumer's channel or queue and Send puts them on the writer's queue, so
// the caller's side of a stream opened with OpenStream has no goroutine
// (NewStream's Requests channel needs one to forward it). The serving side
// of a handler in the Serve form (handlers.ServerStream) has only the
// handler's goroutine; one in the Handle form has one more, which takes the
// handler's messages from its out channel. A goroutine also runs while a
// Responses channel lags more than a few messages behind its reader. An
// idle OpenStream stream to a Serve handler costs about 4 KiB, both sides
// together; to a Handle handler about 6 KiB.
//
// # Buffers
//
// Request copies payload before it returns: the caller may reuse it at
// once. The slice Request returns belongs to the caller. A handler's
// payload is valid only until the handler returns (the session reuses its
// memory); a handler may return it as its answer.
//
// Responses and stream messages that arrive in one frame are read into
// buffers from a pool shared by all sessions (a message in chunks is
// gathered into a buffer of its own). A caller that is done with one may give it back with
// Recycle, so that a later message reuses the memory instead of making
// garbage: at 512 bytes per request that halves the allocations of a round
// trip and leaves the garbage collector almost nothing to do. Recycling is
// optional, and a message must not be touched once recycled.
//
// # Goroutines and bounds
//
// One writer goroutine owns the pipe's write side: every other goroutine
// encodes its frames into a shared, bounded buffer and the writer sends
// what has gathered in one Write, so concurrent requests share syscalls.
// One reader goroutine owns the read side; it never runs user code and
// never waits for queue space (flow control guarantees a stream's queue
// room; a peer that sends beyond its credit breaks the protocol), so a
// slow handler or a slow caller cannot stall the session. Handlers run on worker goroutines, at most
// Config.MaxConcurrent at once. Messages larger than MaxFramePayload travel
// as chunks that interleave with other traffic. Every limit (message size,
// requests in flight, running handlers, queued bytes) is enforced before
// memory is committed; exceeding one is an error, never a hang or an
// unbounded allocation. A peer that breaks the protocol gets the reason in
// an OpClose frame and the session ends with an error matching ErrProtocol.
//
// # Concurrency
//
// All methods of Session may be called concurrently. Close waits for every
// goroutine the session started, including running handlers. Abandon ends
// the session without waiting for handlers: one that ignores its
// cancelled context runs on, its answer is dropped, and Stats counts it in
// OrphanedHandlers until it returns.
//
// # Liveness
//
// Session.Ping measures the round trip; a pong can be late behind data
// queued before it, in either direction. From version 2 of the protocol
// each side also acknowledges (OpAck) how much of the session it has read,
// at most every 50 ms while data arrives; Stats.PeerRead is the peer's
// latest count. A peer whose PeerRead advances is alive and reading, however
// late its pong; one whose kernel merely accepts our bytes is not.
//
// # Stats
//
// Stats holds counters, which only grow, and gauges, which describe what
// is alive: once the session ended every gauge reads 0 but
// OrphanedHandlers. Stats.Counters is what an ended session adds to a
// running total.
package mux
