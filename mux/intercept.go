package mux

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/gridmesh/gridmesh/handlers"
)

// CallInfo describes one call to interceptors: which handler, on which
// peer, and (serving side) the trace context the caller sent. It is passed
// by value, so that a call through a chain of interceptors costs no
// allocation.
type CallInfo struct {
	// Handler is the handler called; Handler.String() is its name.
	Handler handlers.HandlerID
	// Peer names the other end of the session: Config.Peer (the grid sets
	// the peer's host).
	Peer string
	// Stream is true for a stream, false for a single request.
	Stream bool
	// TraceParent and TraceState are, on the serving side, the W3C trace
	// context the caller sent with the call (empty if none). On the
	// calling side they are empty: the trace context travels in the
	// context (WithTraceContext).
	TraceParent, TraceState string
}

// Invoker sends a single request: the last one calls the peer's handler
// info.Handler with req, as Session.Request does.
type Invoker func(ctx context.Context, info CallInfo, req []byte) ([]byte, error)

// ClientInterceptor wraps the requests a session sends. It calls next to
// go on (possibly with a changed ctx, for example one carrying a trace
// context, or a changed req), or returns without calling it to refuse the
// call. What next returns is the call's outcome.
type ClientInterceptor func(ctx context.Context, info CallInfo, req []byte, next Invoker) ([]byte, error)

// ServerHandler serves a single request: the last one runs the handler
// registered for info.Handler (a panic in it comes back as an error
// matching ErrHandlerPanic, and so does a panic in an interceptor inside
// the one that called it).
type ServerHandler func(ctx context.Context, info CallInfo, req []byte) ([]byte, error)

// ServerInterceptor wraps the handlers a session runs for its peer. It
// calls next to run the handler, with the ctx it was given or one derived
// from it (the handler sees that one), or returns without calling it to
// refuse the call (its error reaches the caller as a handler error). next
// takes the CallInfo too, so that a chain of interceptors is built once
// per session and a call through it allocates nothing. A panic in an
// interceptor is recovered where it happens: the interceptors outside it
// see an error matching ErrHandlerPanic as the call's outcome, as for a
// panic in the handler, and the caller gets a panic error.
type ServerInterceptor func(ctx context.Context, info CallInfo, req []byte, next ServerHandler) ([]byte, error)

// StreamOpener opens a stream: the last one opens it to the peer's handler
// info.Handler, as NewStream (or OpenStream) does.
type StreamOpener func(ctx context.Context, info CallInfo, payload []byte) (*Stream, error)

// ClientStreamInterceptor wraps the streams a session opens (NewStream and
// OpenStream). What next returns is the open's outcome; the stream then
// lives on in the caller's hands (Stream.OnEnd tells its end). ctx governs
// the whole stream, as for NewStream.
type ClientStreamInterceptor func(ctx context.Context, info CallInfo, payload []byte, next StreamOpener) (*Stream, error)

// StreamRunner runs a stream handler: the last one runs the handler the
// stream was opened to (in either form), with ctx as its context, and
// returns what it returned (a panic in it comes back as an error matching
// ErrHandlerPanic).
type StreamRunner func(ctx context.Context, info CallInfo, payload []byte) error

// ServerStreamInterceptor wraps the stream handlers a session runs. It
// calls next to run the handler, with the ctx it was given or one derived
// from it (the session finds the stream through it), and sees the
// handler's returned error; or it returns an error without calling next
// to refuse the stream (the caller's Responses then end with it). The
// stream has been accepted by then: the caller's open has succeeded. A
// panic in an interceptor is recovered where it happens, as for a
// ServerInterceptor.
type ServerStreamInterceptor func(ctx context.Context, info CallInfo, payload []byte, next StreamRunner) error

// interceptors are a session's chains, built once by NewSession; nil where
// Config has no interceptor of the kind.
type interceptors struct {
	request    Invoker       // ClientInterceptors around Request
	newStream  StreamOpener  // ClientStreamInterceptors around NewStream
	openStream StreamOpener  // and around OpenStream
	serve      ServerHandler // ServerInterceptors around the handlers
	stream     StreamRunner  // ServerStreamInterceptors around the stream handlers
}

func (s *Session) buildInterceptors() {
	c := s.cfg
	if len(c.ClientInterceptors) > 0 {
		s.ic.request = chainClient(c.ClientInterceptors, func(ctx context.Context, info CallInfo, req []byte) ([]byte, error) {
			return s.request(ctx, info.Handler, req)
		})
	}
	if len(c.ClientStreamInterceptors) > 0 {
		s.ic.newStream = chainOpen(c.ClientStreamInterceptors, func(ctx context.Context, info CallInfo, payload []byte) (*Stream, error) {
			return s.openStream(ctx, info.Handler, payload, true)
		})
		s.ic.openStream = chainOpen(c.ClientStreamInterceptors, func(ctx context.Context, info CallInfo, payload []byte) (*Stream, error) {
			return s.openStream(ctx, info.Handler, payload, false)
		})
	}
	if len(c.ServerInterceptors) > 0 {
		s.ic.serve = s.chainServer(c.ServerInterceptors, s.serveSingle)
	}
	if len(c.ServerStreamInterceptors) > 0 {
		s.ic.stream = s.chainStream(c.ServerStreamInterceptors, s.serveStreamLast)
	}
}

// chainClient returns the invoker that runs ics in order (the first is
// outermost) around last.
func chainClient(ics []ClientInterceptor, last Invoker) Invoker {
	next := last
	for i := len(ics) - 1; i >= 0; i-- {
		ic, n := ics[i], next
		next = func(ctx context.Context, info CallInfo, req []byte) ([]byte, error) {
			return ic(ctx, info, req, n)
		}
	}
	return next
}

func chainOpen(ics []ClientStreamInterceptor, last StreamOpener) StreamOpener {
	next := last
	for i := len(ics) - 1; i >= 0; i-- {
		ic, n := ics[i], next
		next = func(ctx context.Context, info CallInfo, payload []byte) (*Stream, error) {
			return ic(ctx, info, payload, n)
		}
	}
	return next
}

// chainServer returns the handler that runs ics in order around last. A
// panic in an interceptor is recovered at its level and becomes its
// outcome, an error matching ErrHandlerPanic, so that the interceptors
// outside it return normally: what they do after next (end a span, count
// the call) is not skipped by the unwinding.
func (s *Session) chainServer(ics []ServerInterceptor, last ServerHandler) ServerHandler {
	next := last
	for i := len(ics) - 1; i >= 0; i-- {
		ic, n := ics[i], next
		next = func(ctx context.Context, info CallInfo, req []byte) (resp []byte, err error) {
			defer s.recoverInterceptor(info.Handler, &err)
			return ic(ctx, info, req, n)
		}
	}
	return next
}

// chainStream is chainServer for the stream handlers.
func (s *Session) chainStream(ics []ServerStreamInterceptor, last StreamRunner) StreamRunner {
	next := last
	for i := len(ics) - 1; i >= 0; i-- {
		ic, n := ics[i], next
		next = func(ctx context.Context, info CallInfo, payload []byte) (err error) {
			defer s.recoverInterceptor(info.Handler, &err)
			return ic(ctx, info, payload, n)
		}
	}
	return next
}

// recoverInterceptor, deferred by a server interceptor's level of the
// chain, turns a panic in the interceptor into a *panicError in *err.
func (s *Session) recoverInterceptor(h handlers.HandlerID, err *error) {
	if v := recover(); v != nil {
		s.cfg.Logger.Error("mux: server interceptor panicked", "handler", h.String(), "panic", v, "stack", string(debug.Stack()))
		*err = &panicError{fmt.Sprintf("interceptor for %v panicked: %v", h, v)}
	}
}

// openIntercepted opens a stream through a chain of
// ClientStreamInterceptors.
func (s *Session) openIntercepted(open StreamOpener, ctx context.Context, h handlers.HandlerID, payload []byte) (*Stream, error) {
	st, err := open(ctx, CallInfo{Handler: h, Peer: s.cfg.Peer, Stream: true}, payload)
	if err == nil && st == nil {
		err = fmt.Errorf("mux: %v: a ClientStreamInterceptor returned neither a stream nor an error", h)
	}
	return st, err
}

// serveSingle is the last ServerHandler: it runs the handler registered
// for info.Handler, turning a panic into a *panicError.
func (s *Session) serveSingle(ctx context.Context, info CallInfo, req []byte) ([]byte, error) {
	e := s.reg.Lookup(info.Handler)
	if e == nil || e.Single == nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownHandler, info.Handler)
	}
	resp, err, panicked := s.run(ctx, e.Single, info.Handler, req)
	if panicked {
		return nil, &panicError{err.Error()}
	}
	return resp, err
}

// runJob runs a request's handler, through the ServerInterceptors if
// there are any.
func (s *Session) runJob(j job) (resp []byte, err error, panicked bool) {
	if s.ic.serve != nil {
		return s.runIntercepted(j.rc, j.h, j.payload)
	}
	return s.run(j.rc, j.fn, j.h, j.payload)
}

// runIntercepted runs a request's handler through the ServerInterceptors;
// a panic in an interceptor is recovered as one in the handler is (each
// level of the chain recovers its own).
func (s *Session) runIntercepted(rc *reqCtx, h handlers.HandlerID, payload []byte) (resp []byte, err error, panicked bool) {
	resp, err = s.ic.serve(rc, s.serverInfo(h, false, rc.trace), payload)
	if err != nil && isPanic(err) {
		return nil, err, true
	}
	return resp, err, false
}

// isPanic reports whether err is a panic recovered on this side (not a
// remote one a handler passes on).
func isPanic(err error) bool {
	_, ok := errors.AsType[*panicError](err) // AsType: no allocation
	return ok
}

// serverInfo is the CallInfo of a call served for the peer.
func (s *Session) serverInfo(h handlers.HandlerID, stream bool, tr *wireTrace) CallInfo {
	info := CallInfo{Handler: h, Peer: s.cfg.Peer, Stream: stream}
	if tr != nil {
		info.TraceParent, info.TraceState = tr.parent(), tr.state
	}
	return info
}

// serveStreamLast is the last StreamRunner: it runs the handler of the
// stream whose context ctx is (or derives from), turning a panic into a
// *panicError. The stream travels in ctx rather than in a closure, so
// that the chain is built once per session and a stream through it
// allocates nothing more.
func (s *Session) serveStreamLast(ctx context.Context, info CallInfo, payload []byte) (err error) {
	rc, _ := ctx.Value(reqCtxKey{}).(*reqCtx)
	var ss *sstream
	if rc != nil {
		if ss = s.lookupS(rc.id); ss != nil && &ss.rc != rc {
			ss = nil
		}
	}
	switch {
	case ss != nil:
	case rc != nil && rc.Err() != nil:
		return rc.Err() // the session ended, and forgot the stream
	default:
		return fmt.Errorf("mux: %v: a ServerStreamInterceptor called next with a context not derived from the stream's", info.Handler)
	}
	defer s.recoverStreamHandler(ss.h, &err)
	return callStreamHandler(ctx, ss, s.reg.Lookup(ss.h).Stream, payload)
}

// callStreamHandler runs the stream's handler sh, in its form, with ctx.
func callStreamHandler(ctx context.Context, ss *sstream, sh *handlers.StreamHandler, payload []byte) error {
	if ss.direct {
		return sh.Serve(ctx, payload, directStream{ss})
	}
	return sh.Handle(ctx, payload, ss.in, ss.out)
}

// recoverStreamHandler, deferred, turns a panic in a stream handler into
// a *panicError in *err.
func (s *Session) recoverStreamHandler(h handlers.HandlerID, err *error) {
	if v := recover(); v != nil {
		s.cfg.Logger.Error("mux: stream handler panicked", "handler", h.String(), "panic", v, "stack", string(debug.Stack()))
		*err = &panicError{fmt.Sprintf("handler %v panicked: %v", h, v)}
	}
}

// ErrorKind names the kind of a call's outcome, for metrics and logs: one
// of a bounded set. server says which side saw err: a plain error is the
// handler's own on the serving side ("handler") and unknown on the calling
// side ("other"). A nil err is "".
//
//	handler       the handler returned an error
//	panic         the handler panicked
//	unknown       no such handler on the serving side
//	busy          no free handler or stream slot (either side)
//	deadline      the deadline passed
//	canceled      the caller cancelled
//	disconnected  the session ended
//	too_large     a message exceeded a size limit
//	other         anything else (an interceptor's own error, a protocol error)
func ErrorKind(err error, server bool) string {
	if err == nil {
		return ""
	}
	// errors.AsType rather than errors.As: no allocation, as the grid's
	// metrics classify every failed call.
	re, remote := errors.AsType[*RemoteError](err)
	switch {
	case remote:
		return re.kind()
	case isPanic(err):
		return "panic"
	case errors.Is(err, ErrDisconnected):
		return "disconnected"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrMessageTooLarge):
		return "too_large"
	case errors.Is(err, ErrTooManyStreams), errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrUnknownHandler):
		return "unknown"
	case server:
		return "handler"
	}
	return "other"
}

// ErrorKinds returns every kind ErrorKind returns, in a fixed order.
func ErrorKinds() []string {
	return []string{"handler", "panic", "unknown", "busy", "deadline", "canceled", "disconnected", "too_large", "other"}
}

// Is makes a panic recovered on the serving side match ErrHandlerPanic,
// as the caller's RemoteError does.
func (e *panicError) Is(target error) bool { return target == ErrHandlerPanic }

func (e *RemoteError) kind() string {
	switch e.code {
	case codeHandler:
		return "handler"
	case codePanic:
		return "panic"
	case codeUnknown:
		return "unknown"
	case codeBusy, codeStreams:
		return "busy"
	case codeTooLarge:
		return "too_large"
	case codeCanceled:
		return "canceled"
	case codeDeadline:
		return "deadline"
	}
	return "other"
}
