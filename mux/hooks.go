package mux

import "github.com/gridmesh/gridmesh/handlers"

// Hooks for instrumentation: Config.OnStreamMessage, Stream.OnEnd and
// Stream.OnEndQuick, what the interceptors cannot see of a stream (its
// messages, and its end on the calling side).
//
// A stream has one slot for each kind of end hook, so that the usual case
// (the grid's metrics and tracing, one hook of each kind) stores two
// functions and starts no goroutine. Whoever closes Responses runs the
// quick hook, before the close, and takes the other out of its slot, to
// run it once it let go of the stream's lock: on its own goroutine if that
// one may wait (the caller's, the stream's forwarder), else on a session
// worker (runOff).

// noteMsg tells Config.OnStreamMessage of one stream message.
func (s *Session) noteMsg(h handlers.HandlerID, serving, in bool) {
	if f := s.cfg.OnStreamMessage; f != nil {
		f(h, serving, in)
	}
}

// OnEnd arranges for f to run once the stream has ended, when Responses
// closes, with the error that ended it: nil if the handler returned nil,
// else what the last Response carried (the handler's error, the
// context's if the caller cancelled, one matching ErrDisconnected if the
// session ended). f runs once, holding no lock of the stream, and may
// wait (export a span, say): on the goroutine that ended the stream when
// that is the caller's (Cancel, Send, the end of the stream's context) or
// the stream's own, else on one of the session's workers (an idle one if
// there is one: no goroutine starts per stream), never on the session's
// reader. Close waits for it. If the stream has already ended, f runs at
// once, on the caller's goroutine. Interceptors use it to see a stream's
// end (a span's, say). A stream keeps one such function without
// allocating; a second one costs a small allocation.
func (st *Stream) OnEnd(f func(err error)) { st.onEnd(f, false) }

// OnEndQuick is OnEnd for an f that returns at once (counts, does not
// wait), as Config.OnStreamMessage must: it runs on the goroutine that
// ends the stream (the session's reader, often), just before Responses
// closes, so that whoever sees Responses closed sees what f did. It holds
// the stream's lock then: f must not call the stream's methods. Metrics
// use it; it costs no allocation and no hand-over to another goroutine.
func (st *Stream) OnEndQuick(f func(err error)) { st.onEnd(f, true) }

func (cs *cstream) onEnd(f func(error), quick bool) {
	cs.mu.Lock()
	if !cs.delivered {
		if quick {
			cs.endQuick = both(cs.endQuick, f)
		} else {
			cs.end = both(cs.end, f)
		}
		cs.mu.Unlock()
		return
	}
	err := cs.finalErr
	cs.mu.Unlock()
	f(err)
}

// both returns a function that calls a (if not nil), then b.
func both(a, b func(error)) func(error) {
	if a == nil {
		return b
	}
	return func(err error) {
		a(err)
		b(err)
	}
}

// endQuickLocked runs the quick end hook as Responses closes.
func (cs *cstream) endQuickLocked() {
	if f := cs.endQuick; f != nil {
		cs.endQuick = nil
		f(cs.finalErr)
	}
}

// endHook is an end hook taken out of its stream (to run once), with the
// stream's error.
type endHook struct {
	f   func(error)
	err error
}

// takeEndLocked takes the end hook due once Responses closed: the caller
// runs it (run or runOff) after letting go of the stream's lock.
func (cs *cstream) takeEndLocked() endHook {
	if !cs.delivered || cs.end == nil {
		return endHook{}
	}
	h := endHook{cs.end, cs.finalErr}
	cs.end = nil
	return h
}

// run runs h on this goroutine, one that may wait.
func (h endHook) run() {
	if h.f != nil {
		h.f(h.err)
	}
}

// runOff runs h on a worker of the session: for the reader, which must
// not wait on user code, and for fail. Both know that Close has not begun
// to wait for the session's goroutines (the reader runs; fail runs before
// Close waits), so a worker may start although the session is closing.
func (s *Session) runOff(h endHook) {
	if h.f == nil {
		return
	}
	j := job{end: h.f, endErr: h.err}
	if w := s.workers.take(); w != nil {
		w.jobs <- j // buffered: never blocks
		return
	}
	s.handlers.Add(1)
	go s.worker(j)
}
