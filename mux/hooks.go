package mux

import "github.com/gridmesh/gridmesh/handlers"

// Hooks for instrumentation: Config.OnStreamMessage and Stream.OnEnd, what
// the interceptors cannot see of a stream (its messages, and its end on
// the calling side).

// noteMsg tells Config.OnStreamMessage of one stream message.
func (s *Session) noteMsg(h handlers.HandlerID, serving, in bool) {
	if f := s.cfg.OnStreamMessage; f != nil {
		f(h, serving, in)
	}
}

// OnEnd arranges for f to run once the stream has ended, when Responses
// closes (at once if it has), with the error that ended it: nil if the
// handler returned nil, else what the last Response carried (the
// handler's error, the context's if the caller cancelled, one matching
// ErrDisconnected if the session ended). f runs on a goroutine of its
// own, which the session's Close waits for; once the session is closing,
// on the goroutine that ends the stream, holding the stream's lock: f
// must not call the stream's methods. Interceptors use it to see a
// stream's end (a span's, a gauge's).
func (st *Stream) OnEnd(f func(err error)) {
	cs := &st.cstream
	cs.mu.Lock()
	if !cs.delivered {
		cs.onEnd = append(cs.onEnd, f)
		cs.mu.Unlock()
		return
	}
	err := cs.finalErr
	cs.mu.Unlock()
	cs.s.runEndHook(f, err)
}

// endedLocked runs the OnEnd functions once Responses closed.
func (cs *cstream) endedLocked() {
	fs := cs.onEnd
	cs.onEnd = nil
	for _, f := range fs {
		cs.s.runEndHook(f, cs.finalErr)
	}
}

func (s *Session) runEndHook(f func(error), err error) {
	if !s.track() {
		f(err) // the session is closing: no goroutine may start
		return
	}
	go func() {
		defer s.handlers.Done()
		f(err)
	}()
}
