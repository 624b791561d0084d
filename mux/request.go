package mux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gridmesh/gridmesh/handlers"
)

// call is one request sent by this side and not yet answered. Calls are
// pooled; the goroutine that removes a call from Session.pending owns it
// and releases its request slot.
type call struct {
	h         handlers.HandlerID
	done      chan struct{} // cap 1; signalled once the answer is complete
	resp      []byte
	g         chunks // a response still arriving in chunks (counted in respIn)
	err       error
	reserved  int64 // of the peer's MaxRequestBytes, until the answer
	arrived   int64 // when the answer arrived (the reader's stamp, see RequestObserver)
	abandoned bool  // the caller gave up; the reader frees the call
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// Request sends payload to the peer's handler h and returns its answer.
//
// The caller may reuse payload as soon as Request returns; the returned
// slice belongs to the caller, who may give it back with Recycle once done
// with it. ctx's deadline travels to the handler, and
// cancelling ctx cancels the handler's context. A handler's error comes
// back as a *RemoteError. On a closed session Request fails at once with
// ErrDisconnected; if the pipe breaks while waiting, it fails at once too.
//
// The ClientInterceptors of the session's Config run around the request.
// A trace context in ctx (WithTraceContext) goes with it.
func (s *Session) Request(ctx context.Context, h handlers.HandlerID, payload []byte) ([]byte, error) {
	if o := s.cfg.Observer; o != nil {
		return s.observedRequest(ctx, o, h, payload)
	}
	if s.ic.request != nil {
		return s.ic.request(ctx, CallInfo{Handler: h, Peer: s.cfg.Peer}, payload)
	}
	return s.request(ctx, h, payload)
}

// request is Request without the interceptors and the observer.
func (s *Session) request(ctx context.Context, h handlers.HandlerID, payload []byte) ([]byte, error) {
	resp, _, err := s.roundTrip(ctx, h, payload)
	return resp, err
}

// roundTrip is request; it also returns when the answer arrived
// (monoNow, stamped by the reader when Config.Observer is set; else 0).
func (s *Session) roundTrip(ctx context.Context, h handlers.HandlerID, payload []byte) (_ []byte, arrived int64, _ error) {
	if !h.Valid() {
		return nil, 0, fmt.Errorf("%w: %d", ErrInvalidHandler, uint16(h))
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, 0, err
	}
	if len(payload) > s.maxSend {
		return nil, 0, fmt.Errorf("%w: %v request of %d bytes exceeds %d", ErrMessageTooLarge, h, len(payload), s.maxSend)
	}
	deadline, err := wireDeadline(ctx)
	if err != nil {
		return nil, 0, err
	}
	if err := s.acquireSlot(ctx); err != nil {
		return nil, 0, err
	}
	var reserved int64
	if len(payload) > MaxFramePayload {
		// A request in chunks counts in the peer's MaxRequestBytes until
		// its answer comes.
		reserved = charge(len(payload))
		if err := s.reqOut.acquire(ctx, s.closing, reserved, "MaxRequestBytes"); err != nil {
			<-s.slots
			return nil, 0, s.sendError(err)
		}
	}
	c := callPool.Get().(*call)
	c.h, c.reserved = h, reserved
	s.pendMu.Lock()
	select {
	case <-s.closing:
		s.pendMu.Unlock()
		s.releaseCall(c)
		return nil, 0, s.disconnected()
	default:
	}
	id := s.nextID.Add(1)
	s.pending[id] = c
	s.requestsOut++
	s.pendMu.Unlock()

	sent, err := s.sendOpen(ctx, Header{Op: OpRequest, Handler: h, ID: id, Deadline: deadline}, payload)
	if err != nil {
		resp, err := s.abandon(id, c, sent, sent, s.sendError(err))
		return resp, 0, err
	}
	if done := ctx.Done(); done == nil {
		<-c.done // a context that is never done: no select needed
	} else {
		select {
		case <-c.done:
		case <-done:
			// The remote knows the deadline and expires on its own: a
			// cancel frame is needed only for an explicit cancellation.
			sent := deadline == 0 || ctx.Err() != context.DeadlineExceeded
			resp, err := s.abandon(id, c, true, sent, ctx.Err())
			return resp, 0, err
		}
	}
	resp, err, arrived := c.resp, c.err, c.arrived
	s.recycle(c)
	return resp, arrived, err
}

// acquireSlot takes one of the session's outgoing request slots.
func (s *Session) acquireSlot(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return s.disconnected()
	}
}

// releaseCall frees a call that was never sent.
func (s *Session) releaseCall(c *call) {
	s.freeSlot(c)
	s.recycle(c)
}

// freeSlot releases a call's request slot and its reservation of the
// peer's MaxRequestBytes: its answer came, or it never left, or the
// session ended.
func (s *Session) freeSlot(c *call) {
	<-s.slots
	s.reqOut.release(c.reserved)
	c.reserved = 0
}

func (s *Session) recycle(c *call) {
	*c = call{done: c.done}
	callPool.Put(c)
}

// abandon gives up on call id with err. If the request reached the pipe
// (sent), the call stays pending until the peer's final answer, so the slot
// accounting on both sides stays exact; tell sends the peer an OpCancel.
// If the answer (or the session's end) got there first, that is returned.
func (s *Session) abandon(id uint64, c *call, sent, tell bool, err error) ([]byte, error) {
	s.pendMu.Lock()
	if s.pending[id] != c {
		s.pendMu.Unlock()
		<-c.done
		resp, rerr := c.resp, c.err
		s.recycle(c)
		return resp, rerr
	}
	if !sent {
		delete(s.pending, id)
		s.pendMu.Unlock()
		s.releaseCall(c)
		return nil, err
	}
	c.abandoned = true
	s.pendMu.Unlock()
	s.stats.cancelled.Add(1)
	if !tell {
		return nil, err
	}
	if perr := s.q.put(context.Background(), s.closing, Header{Op: OpCancel, ID: id}, nil, control); perr != nil {
		s.fail(perr)
	}
	return nil, err
}

// send writes one message as one or more frames; sent reports whether any
// frame was queued, so the peer may have seen part of the message.
func (s *Session) send(ctx context.Context, h Header, payload []byte) (sent bool, err error) {
	c := normal
	if len(payload) > MaxFramePayload {
		c = bulk
	}
	for {
		n := min(len(payload), MaxFramePayload)
		fh := h
		if n < len(payload) {
			fh.Flags |= FlagMore
		}
		if err := s.q.put(ctx, s.closing, fh, payload[:n], c); err != nil {
			return sent, err
		}
		sent = true
		payload = payload[n:]
		if fh.Flags&FlagMore == 0 {
			return true, nil
		}
		h.Seq++
		h.Handler = 0
		h.Deadline = 0
	}
}

// handleResponse reads a response frame and completes the waiting call.
// Call fields are only changed under pendMu, so failPending cannot race it;
// the payload is read with pendMu released. A response in one frame is read
// straight into the buffer the caller gets (from getMsg, so that the caller
// may Recycle it); one in chunks is gathered in segments (counted in
// respIn) and copied once, at its end, into a buffer from getMsg.
func (s *Session) handleResponse(br *bufio.Reader, h Header) error {
	if h.Seq == 0 && h.Flags&FlagMore == 0 {
		if int(h.Length) > s.cfg.MaxMessageSize {
			return fmt.Errorf("%w: response %d exceeds %d bytes", ErrProtocol, h.ID, s.cfg.MaxMessageSize)
		}
		resp, err := readMsg(br, h.Length)
		if err != nil {
			return err
		}
		s.pendMu.Lock()
		c := s.pending[h.ID]
		if c == nil || c.g.seq != 0 {
			s.pendMu.Unlock()
			Recycle(resp)
			return s.checkChunk(c, h)
		}
		return s.complete(c, h, resp)
	}
	s.pendMu.Lock()
	c := s.pending[h.ID]
	if err := s.checkChunk(c, h); err != nil {
		s.pendMu.Unlock()
		return err
	}
	if h.Flags&FlagMore == 0 {
		// The last chunk: the reader takes the segments, so that the call
		// may end (failPending) while it reads.
		segs := c.g.take()
		s.pendMu.Unlock()
		resp, err := assemble(segs, br, h, getMsg)
		s.respIn.sub(int64(len(segs)) * MaxFramePayload)
		if err != nil {
			return err
		}
		s.pendMu.Lock()
		if s.pending[h.ID] != c {
			s.pendMu.Unlock()
			return nil // failPending ended the call while we read
		}
		return s.complete(c, h, resp)
	}
	s.pendMu.Unlock()
	{
		if err := s.respIn.add(MaxFramePayload); err != nil {
			return err
		}
		seg, err := readSeg(br)
		if err != nil {
			return err
		}
		s.pendMu.Lock()
		if s.pending[h.ID] != c {
			// failPending ended the call while we read: the session is
			// over.
			s.pendMu.Unlock()
			putBuf(seg)
			return nil
		}
		c.g.push(seg, s)
		s.pendMu.Unlock()
		return nil
	}
}

// complete ends call c with the response resp (the whole of it): the call
// leaves pending, its slot is freed, and its caller, if still waiting, is
// woken. pendMu must be held; complete releases it.
func (s *Session) complete(c *call, h Header, resp []byte) error {
	c.resp, c.arrived = resp, s.readAt
	delete(s.pending, h.ID)
	s.pendMu.Unlock()
	s.freeSlot(c)
	if c.abandoned {
		Recycle(resp)
		s.recycle(c)
		return nil
	}
	if h.Flags&FlagError != 0 {
		c.err = remoteError(c.h, c.resp)
		c.resp = nil
		s.stats.remoteErrs.Add(1)
	}
	c.done <- struct{}{}
	return nil
}

// checkChunk checks a response chunk for call c (nil if unknown) against
// what the call expects. pendMu must be held.
func (s *Session) checkChunk(c *call, h Header) error {
	if c == nil {
		return fmt.Errorf("%w: response for unknown request %d", ErrProtocol, h.ID)
	}
	return c.g.check(h, s.cfg.MaxMessageSize, "response")
}

// failPending ends every pending call with the session's error.
func (s *Session) failPending(cause error) {
	err := fmt.Errorf("%w: %w", ErrDisconnected, cause)
	if errors.Is(cause, ErrDisconnected) {
		err = cause
	}
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	for id, c := range s.pending {
		delete(s.pending, id)
		s.freeSlot(c)
		if c.abandoned {
			s.recycle(c)
			continue
		}
		c.resp, c.err = nil, err
		c.done <- struct{}{}
	}
}
