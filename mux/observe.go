package mux

import (
	"context"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// RequestObserver learns of every single request a session sends or
// serves (Config.Observer): its begin and its end. It is how the grid
// counts requests for its metrics. It sees what the outermost interceptor
// would, at a fraction of the cost: it is called directly, not through a
// chain of closures, and the session times the request with clock reads
// it shares with other requests where it can (see RequestDone).
//
// Its methods run on the caller's goroutine (calling side) or the
// handler's (serving side), and must return at once: count, do not
// wait. They may be called concurrently. They must not panic: nothing
// recovers a panic there, on the serving side it ends the process.
type RequestObserver interface {
	// RequestBegun tells of a request begun: sent (serving false), or
	// about to run this side's handler (serving true). A request the
	// session refuses before a handler runs (an unknown handler, no free
	// slot) is not served here: the caller sees its error.
	RequestBegun(h handlers.HandlerID, serving bool)
	// RequestDone tells of its end, once per RequestBegun, with err the
	// outcome the outermost interceptor would see (mux.ErrorKind
	// classifies it; a panic matches ErrHandlerPanic). On the calling
	// side d runs from Request's call to the answer's arrival (when the
	// session read it) or, for a request that failed or went through
	// interceptors, to Request's return; on the serving side, from the
	// request's arrival, whole, to its handler's (and interceptors')
	// return. Arrivals are stamped once per read from the pipe, so that
	// the requests and answers of one read share one clock read.
	// A panic in a client interceptor is told as it passes, as an error
	// matching ErrHandlerPanic; a caller's misuse that panics in Request
	// itself (a nil context) is not told.
	RequestDone(h handlers.HandlerID, serving bool, d time.Duration, err error)
}

// monoEpoch is the origin of monoNow.
var monoEpoch = time.Now()

// monoNow reads the monotonic clock alone, in nanoseconds since
// monoEpoch: one clock read, where time.Now makes two.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// observedRequest is Request with s.cfg.Observer set.
func (s *Session) observedRequest(ctx context.Context, o RequestObserver, h handlers.HandlerID, payload []byte) ([]byte, error) {
	start := monoNow()
	o.RequestBegun(h, false)
	if s.ic.request != nil {
		return s.observeIntercepted(ctx, o, h, payload, start)
	}
	resp, at, err := s.roundTrip(ctx, h, payload)
	if at < start { // no answer arrived (or none stamped): now
		at = monoNow()
	}
	o.RequestDone(h, false, time.Duration(at-start), err)
	return resp, err
}

// observeIntercepted runs a request through the ClientInterceptors for
// observedRequest. A panic in an interceptor goes on up to the caller;
// the observer is told of it as it passes, as an error matching
// ErrHandlerPanic.
func (s *Session) observeIntercepted(ctx context.Context, o RequestObserver, h handlers.HandlerID, payload []byte, start int64) (resp []byte, err error) {
	returned := false
	defer func() {
		if !returned {
			o.RequestDone(h, false, time.Duration(monoNow()-start), &panicError{"panic in a client interceptor"})
		}
	}()
	resp, err = s.ic.request(ctx, CallInfo{Handler: h, Peer: s.cfg.Peer}, payload)
	returned = true
	o.RequestDone(h, false, time.Duration(monoNow()-start), err)
	return resp, err
}
