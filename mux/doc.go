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
// Config.MaxStreamBytes the bytes of the messages their receiving sides
// hold beyond a small reserve per stream: senders wait for room, so a
// stalled reader stops its own sender, and the others only once the
// stalled streams hold MaxStreamBytes. A caller that cancels a stream
// (Stream.Cancel, or its context ends) drops the messages it has not
// taken, and the stream's Responses and Done close at once whether or not
// anyone reads them.
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
// # Interceptors
//
// Config holds four lists of interceptors, run in order, the first
// outermost, as grpc-go's are: ClientInterceptors around Request,
// ClientStreamInterceptors around NewStream and OpenStream (they see the
// open's outcome), ServerInterceptors around each single handler and
// ServerStreamInterceptors around each stream handler's run (they see
// the error it returned). Each sees a CallInfo (the handler's ID, whose
// String is its name, Config.Peer, whether it is a stream and, serving,
// the caller's trace context), the context, the payload, and the
// outcome: what next returned. An interceptor may change the context it
// passes on (the handler runs with the one the innermost server
// interceptor passed), or refuse the call by returning without calling
// next. A panic in a handler, or in a server interceptor, reaches the
// server interceptors outside it as an error matching ErrHandlerPanic
// (each level of the chain recovers its own), so that what they do after
// next is never skipped; a panic in a client interceptor goes on up to the
// caller, as any panic in the caller's goroutine does. ErrorKind names an
// outcome's kind from a bounded set, for metrics. The chains are built
// once per session and CallInfo travels by value (a stream handler's
// stream travels in its context): interceptors that allocate nothing add
// no allocation to a call or a stream. What interceptors cannot see of a
// stream has hooks: Config.OnStreamMessage is told of each of its
// messages, and Stream.OnEnd and OnEndQuick of the end of a stream this
// side opened, OnEnd off the session's reader (it may wait), OnEndQuick
// inline (it must not); neither starts a goroutine per stream.
//
// Counting single requests needs less than an interceptor: the
// Config.Observer (a RequestObserver) is told of each request's begin and
// end, with its duration and outcome, outside every interceptor, by a
// direct call. The session times requests with clock reads it shares:
// the reader stamps each read from the pipe once, and that stamp is the
// arrival of every request and answer the read brought.
//
// # Trace context
//
// WithTraceContext puts a W3C trace context (traceparent, tracestate) in
// a caller's context; Request, NewStream and OpenStream made with it send
// it to the peer in an OpTrace frame just before the call (SPEC.md,
// TRACE; version 3: a version 2 peer gets the call without it), and the
// serving side's interceptors find it in CallInfo.TraceParent and
// TraceState. A call without one sends nothing more and allocates nothing
// more. mux only carries the context; the grid's tracing
// (grid.Options.TracerProvider) makes the spans.
//
// # Buffers
//
// Request copies payload before it returns: the caller may reuse it at
// once. The slice Request returns belongs to the caller. A handler's
// payload is valid only until the handler returns (the session reuses its
// memory); a handler may return it as its answer.
//
// Responses and stream messages are read into buffers from a pool shared
// by all sessions, keyed by size class; a message in chunks is gathered
// chunk by chunk (64 KiB each) and then copied once into a buffer of its
// class, at most a sixteenth larger than itself, so no message is held in
// a buffer much larger than itself. A caller that is done with one may
// give it back with Recycle, so that a later message reuses the memory
// instead of making garbage: at 512 bytes per request that halves the
// allocations of a round trip and leaves the garbage collector almost
// nothing to do.
// Recycling is optional, and a message must not be touched once recycled.
//
// # Goroutines and bounds
//
// One writer goroutine owns the pipe's write side: every other goroutine
// encodes its frames into a shared, bounded buffer and the writer sends
// what has gathered in one Write, so concurrent requests share syscalls.
// One reader goroutine owns the read side; it never waits for queue space
// (flow control guarantees a stream's queue room; a peer that sends
// beyond its credit breaks the protocol), and it runs user code only for
// a handler registered inline (handlers.Registry.RegisterInline), and
// then for at most Config.InlineBudget: past that, the reading moves to a
// new goroutine and the handler finishes as a worker. So a slow handler
// or a slow caller cannot stall the session. Other handlers run on worker
// goroutines; at most Config.MaxConcurrent handlers run at once, inline
// ones included.
//
// Inline handlers save the hand-off of each request to a worker, and the
// thread the runtime may wake to run it. Measured with an echo on a 2-core
// machine (internal/bench/MESH.md): two nodes and 64 callers make about
// 13% more round trips per second at 17% less CPU per call, a full mesh
// of 4 nodes about 9% more, one of 8 nodes (about one call per
// connection) none measurable. Messages larger than MaxFramePayload travel
// as chunks that interleave with other traffic. Every limit (message size,
// requests in flight, running handlers, bytes held for the peer, queued
// bytes) is enforced before memory is committed; exceeding one is an
// error, never a hang or an unbounded allocation. A peer that breaks the
// protocol gets the reason in an OpClose frame and the session ends with
// an error matching ErrProtocol.
//
// # Memory
//
// What a peer can make a session hold is bounded by the Config, whatever
// the peer sends, and by default. The byte bounds are announced in the
// hello, and a conforming peer's senders wait rather than exceed them
// (Request, Send and the handlers' answers wait for room; the waits
// respect their contexts), so a peer that exceeds one is hostile or
// broken and its session ends with a protocol error naming the bound; so
// does a message whose chunks stop coming for Config.ChunkTimeout. The
// worst case for one session, Config.MemoryBound, is
//
//	  2 · (4 · MaxQueuedBytes + 1 MiB + 64 KiB)   frames queued to write, and the batch being written
//	+ 68 KiB                                      read buffers
//	+ MaxConcurrent · (64 KiB + 8 KiB)            handlers running, each with a request of one frame
//	+ 1.5 · MaxRequestBytes + MaxMessageSize      requests in chunks and streams' initial payloads,
//	                                                and one message being put together from its chunks
//	+ MaxResponseBytes                            responses arriving in chunks
//	+ 1.5 · (MaxStreamBytes                       stream messages held for their consumers,
//	         + 2 · MaxStreams · StreamReserve)      and each stream's reserve
//	+ 2 · MaxStreams · 16 KiB                     the streams served and opened, with their goroutines
//
// where StreamReserve, what each stream may hold without counting against
// MaxStreamBytes, is MaxStreamBytes / (2 · MaxStreams) within 4..64 KiB,
// and the factor 1.5 covers the size classes of the buffers a message of
// one frame is read into. The 8 and 16 KiB are goroutine stacks as the
// runtime starts them plus the session's state, measured at about 6 and
// 7 KiB, and for a stream the storage its message queue keeps after a
// burst (at most 6 KiB). Not counted: what handler code allocates (or grows its stack
// to), and what callers hold of the responses and stream messages they
// received, which for a stream that ended before its caller read it is at
// most its reserve.
//
// With the default Config (16 MiB messages, 4096 handlers, 16384 streams,
// 64 MiB for each byte bound) that is about 1.25 GiB per session, most of
// it for MaxConcurrent and MaxStreams; with MaxConcurrent 256 and
// MaxStreams 1024, about 430 MiB. TestMemoryBoundAdversary drives a
// session at every limit at once from a hostile peer and checks the
// bound.
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
