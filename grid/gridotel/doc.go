// Package gridotel traces the calls of a mux session (and so of a grid)
// with OpenTelemetry: client and server interceptors that make a client
// span and a server span per call, following OpenTelemetry's RPC semantic
// conventions (semconv v1.37.0, the experimental RPC conventions that
// instrumentations such as otelgrpc still emit by default), and carry the
// W3C trace context across the hop (mux.WithTraceContext on the calling
// side, CallInfo.TraceParent on the serving side).
//
// Spans are named "gridmesh/<handler name>" and carry:
//
//	rpc.system             "gridmesh"
//	rpc.method             the handler's name (handlers.HandlerID.Name)
//	gridmesh.handler.id    the handler's ID
//	gridmesh.stream        true for a stream (absent for a single request)
//	gridmesh.peer          the peer's host URL, as CallInfo.Peer gives it
//	server.address/.port   client spans: the peer's host and port
//	network.peer.address/.port  both: the peer's host and port
//	error.type             on failure: mux.ErrorKind of the outcome
//
// A failed call's span has status Error with the error's text; a call an
// interceptor inside panicked out of has error.type "panic" (on the
// serving side mux recovers the panic and the span ends as any failed
// call's; on the calling side the span ends as the panic passes). A client
// span covers the whole call: for a stream, from the open to the end of
// its Responses (mux.Stream.OnEnd, which never ends it on the session's
// reader, so that a span processor that exports as the span ends does not
// hold the session up); a server span covers the handler's run, and is
// the span in the handler's context (trace.SpanFromContext(ctx) in a
// handler returns it), so that the handler's own spans and calls are its
// children.
//
// A span's name and attributes are made once per handler, peer, kind and
// side and kept: a span costs no more than its start. ForgetPeer drops a
// peer's (the grid calls it when it removes a peer), and at most 4096 are
// kept whatever happens: past that a span's are made for it alone.
//
// The grid uses it when grid.Options.TracerProvider is set; a library
// user with bare mux sessions puts the four methods of a Tracing in
// mux.Config. All methods may be called concurrently.
package gridotel
