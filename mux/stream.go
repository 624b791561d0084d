package mux

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// Response is one message from a stream's handler, or the error that ended
// the stream (then Msg is nil and it is the last Response).
type Response struct {
	Msg []byte
	Err error
}

// Stream is a two-way stream to a handler on the peer, opened by
// NewStream or OpenStream.
//
// Responses delivers the handler's messages in order. It is closed when the
// stream ends: after the handler returned (its error, if any, is the last
// Response), after the caller cancelled (Cancel, or its context ended), or
// when the session ended (an error matching ErrDisconnected). Responses
// must be read until it is closed, except after a cancel: then the
// messages not yet received are dropped (and recycled), nothing more is
// delivered, and Responses and Done close at once whether or not anyone
// reads, leaving no goroutine behind. The context's error is then the last
// Response, unless Responses is unbuffered (OutCapacity 1) and nobody was
// receiving from it at that moment; Recv and Results return it either way.
//
// Requests carries the caller's messages to the handler; close it to end the
// handler's input. It is nil when the handler takes no input, and on a
// stream opened with OpenStream (use Send and CloseSend there). A send on
// Requests blocks while the handler's input is full (flow control); Send
// does the same but gives up when ctx ends or the stream ends, and is the
// safer way to send. A message's memory belongs to the stream once sent.
//
// Requests and Responses may be used from different goroutines. Send may be
// called concurrently; CloseSend must not be called concurrently with Send.
type Stream struct {
	Responses <-chan Response
	Requests  chan<- []byte

	cstream
	closeOnce sync.Once
	err       error // the stream's final error, for Recv
}

var _ handlers.RawStream = (*Stream)(nil)

// Recv returns the next message from Responses, io.EOF once the stream
// ended cleanly, or the error that ended it (again on every later call).
// Recv must not be called concurrently with itself or with reads of
// Responses. The message belongs to the caller, who may give it back with
// Recycle once done with it.
func (st *Stream) Recv() ([]byte, error) {
	if st.err != nil {
		return nil, st.err
	}
	r, ok := <-st.Responses
	switch {
	case !ok:
		st.err = io.EOF
		st.mu.Lock()
		if st.lostErr != nil {
			st.err = st.lostErr
		}
		st.mu.Unlock()
	case r.Err != nil:
		st.err = r.Err
	default:
		st.taken()
		return r.Msg, nil
	}
	return nil, st.err
}

// CloseSend ends the handler's input: it closes Requests, or on a stream
// opened with OpenStream tells the handler directly. It may be called more
// than once; it does nothing for a handler without input. Do not also
// close Requests yourself.
func (st *Stream) CloseSend() {
	if st.Requests != nil {
		st.closeOnce.Do(func() { close(st.Requests) })
		return
	}
	st.closeSend()
}

// OpenStream opens a stream as NewStream does, but without the Requests
// channel: the caller sends with Send and ends its input with CloseSend.
// Such a stream costs no goroutine on the calling side. It returns the
// handlers.RawStream interface, so that typed stream handlers can open
// streams on a Session; the value is a *Stream.
func (s *Session) OpenStream(ctx context.Context, h handlers.HandlerID, payload []byte) (handlers.RawStream, error) {
	var st *Stream
	var err error
	if s.ic.openStream != nil {
		st, err = s.openIntercepted(s.ic.openStream, ctx, h, payload)
	} else {
		st, err = s.openStream(ctx, h, payload, false)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Send sends msg, waiting for flow-control credit. It returns ctx's error
// if ctx ends first, and ErrStreamEnded if the stream ended. On a stream
// with a Requests channel, Send goes through it, so that messages sent both
// ways from one goroutine keep their order.
func (st *Stream) Send(ctx context.Context, msg []byte) error {
	if st.inCap == 0 {
		return fmt.Errorf("%w: %v takes no input", ErrStreamEnded, st.h)
	}
	if st.Requests == nil {
		return st.send(ctx, msg)
	}
	select {
	case <-st.done:
		return ErrStreamEnded
	default:
	}
	select {
	case st.Requests <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-st.done:
		return ErrStreamEnded
	}
}

// Results calls fn for every message until the stream ends, and returns
// the stream's error (nil if the handler returned nil). If fn returns an
// error, the stream is cancelled, drained, and that error is returned.
func (st *Stream) Results(fn func(msg []byte) error) error {
	var ferr error
	for r := range st.Responses {
		if r.Err != nil {
			if ferr != nil {
				return ferr
			}
			return r.Err
		}
		if ferr == nil {
			if ferr = fn(r.Msg); ferr != nil {
				st.Cancel()
			}
		}
	}
	if ferr != nil {
		return ferr
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lostErr // the stream's error, if Responses closed without it
}

// Cancel cancels the stream as cancelling its context would.
func (st *Stream) Cancel() { st.abort(context.Canceled) }

// Done is closed once the stream has ended, when Responses closes: after
// its last Response was taken, or at once after a cancel (see Stream), so
// a caller that cancels may wait on Done without reading Responses.
func (st *Stream) Done() <-chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.doneLocked()
}

// doneLocked returns cs.done, making it (closed if Responses already is)
// on first use.
func (cs *cstream) doneLocked() chan struct{} {
	if cs.done == nil {
		cs.done = make(chan struct{})
		if cs.delivered {
			close(cs.done)
		}
	}
	return cs.done
}

// NewStream opens a stream to the peer's stream handler h, sending payload
// as the handler's initial payload. It waits for the peer to accept, so
// the handler's capacities are known (and an unknown handler is an error
// here). ctx governs the whole stream: its deadline travels to the handler,
// and cancelling it cancels the stream.
//
// A stream with input has a Requests channel and one goroutine that
// forwards what is sent on it; OpenStream opens a stream without either.
//
// The ClientStreamInterceptors of the session's Config run around the
// open. A trace context in ctx (WithTraceContext) goes with it.
func (s *Session) NewStream(ctx context.Context, h handlers.HandlerID, payload []byte) (*Stream, error) {
	if s.ic.newStream != nil {
		return s.openIntercepted(s.ic.newStream, ctx, h, payload)
	}
	return s.openStream(ctx, h, payload, true)
}

func (s *Session) openStream(ctx context.Context, h handlers.HandlerID, payload []byte, withChan bool) (*Stream, error) {
	if !h.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrInvalidHandler, uint16(h))
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	if len(payload) > s.maxSend {
		return nil, fmt.Errorf("%w: %v stream payload of %d bytes exceeds %d", ErrMessageTooLarge, h, len(payload), s.maxSend)
	}
	deadline, err := wireDeadline(ctx)
	if err != nil {
		return nil, err
	}
	select {
	case s.cslots <- struct{}{}:
	default:
		return nil, fmt.Errorf("%w: %v: the session's limit of %d open streams is reached", ErrTooManyStreams, h, cap(s.cslots))
	}
	var reserved int64
	if len(payload) > 0 {
		// The payload counts in the peer's MaxRequestBytes until the
		// stream ends.
		reserved = charge(len(payload))
		if err := s.reqOut.acquire(ctx, s.closing, reserved, "MaxRequestBytes"); err != nil {
			<-s.cslots
			return nil, s.sendError(err)
		}
	}
	st := &Stream{}
	cs := &st.cstream
	cs.s, cs.h, cs.id, cs.reserved = s, h, s.nextID.Add(1), reserved
	cs.sig = make(chan struct{}, 1)
	s.strMu.Lock()
	select {
	case <-s.closing:
		s.strMu.Unlock()
		<-s.cslots
		s.reqOut.release(reserved)
		return nil, s.disconnected()
	default:
	}
	s.cstreams[cs.id] = cs
	s.strMu.Unlock()

	sent, err := s.sendOpen(ctx, Header{Op: OpStreamOpen, Handler: h, ID: cs.id, Deadline: deadline}, payload)
	if err == nil {
		select {
		case <-cs.sig:
			// An answer and the caller's end may both be ready, and
			// select picks either: a caller that has given up gets its
			// context's error whichever came first (an accepted stream
			// is then cancelled like one still opening).
			err = ctx.Err()
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.closing:
			err = s.disconnected()
		}
	}
	if err != nil {
		s.abandonStream(cs, sent)
		return nil, s.sendError(err)
	}
	if cs.openErr != nil {
		return nil, cs.openErr
	}
	st.Responses = cs.resp
	if withChan && cs.inCap > 0 {
		if !s.track() {
			cs.abort(s.disconnected())
			return st, nil
		}
		reqs := make(chan []byte)
		st.Requests = reqs
		cs.mu.Lock()
		cs.doneLocked()
		cs.mu.Unlock()
		go cs.forwardRequests(ctx, reqs)
	}
	cs.mu.Lock()
	cs.opened = true
	cs.releaseTokenLocked()
	cs.mu.Unlock()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { cs.abort(ctx.Err()) })
		cs.mu.Lock()
		if cs.delivered {
			cs.mu.Unlock()
			stop()
		} else {
			cs.stop = stop
			cs.mu.Unlock()
		}
	}
	return st, nil
}

// track counts a new goroutine of the session unless the session ended
// (fail closes s.closing under strMu, so the Add cannot race Close's Wait).
func (s *Session) track() bool {
	s.strMu.Lock()
	defer s.strMu.Unlock()
	select {
	case <-s.closing:
		return false
	default:
	}
	s.handlers.Add(1)
	return true
}

// wireDeadline converts ctx's deadline to the header field.
func wireDeadline(ctx context.Context) (uint32, error) {
	d, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	left := time.Until(d)
	if left <= 0 {
		return 0, context.DeadlineExceeded
	}
	return deadlineMillis((left + time.Millisecond - 1).Milliseconds()), nil
}

// abandonStream gives up on a stream whose open did not complete. If the
// open reached the pipe, the peer is told to cancel, and the state stays
// until its accept (or end) arrives, like an abandoned request.
func (s *Session) abandonStream(cs *cstream, sent bool) {
	s.strMu.Lock()
	if s.cstreams[cs.id] != cs {
		s.strMu.Unlock()
		return // the accept with an error, or the session's end, cleaned up
	}
	if !sent {
		delete(s.cstreams, cs.id)
		s.strMu.Unlock()
		<-s.cslots
		s.reqOut.release(cs.reserved)
		return
	}
	s.strMu.Unlock()
	cs.mu.Lock()
	// Nobody will read Responses: the stream is final at once, so that
	// its accept and end drop what they bring instead of delivering it
	// (into a channel nobody reads, by a forwarder that would wait there
	// until the session ends).
	if !cs.final {
		cs.cancelled = true
		cs.finishLocked(nil, true, false)
	}
	ended := cs.ended
	cs.mu.Unlock()
	if ended {
		s.dropCStream(cs)
		return
	}
	s.control(Header{Op: OpCancel, ID: cs.id})
}
