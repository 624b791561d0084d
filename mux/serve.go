package mux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// partial is a request (or stream open) whose chunks are still arriving.
type partial struct {
	stream   bool // OpStreamOpen rather than OpRequest
	h        handlers.HandlerID
	deadline uint32
	arrived  time.Time // first chunk; the deadline counts from here
	g        chunks    // the chunks so far (none if rejected)
	rejected bool      // no handler slot: discard the chunks, then answer busy
	skipped  int       // bytes discarded so far, if rejected
	charged  int64     // counted in reqIn so far

	// The trace context the caller sent; nil: none.
	trace *wireTrace
}

func (p *partial) what() string {
	if p.stream {
		return "stream open"
	}
	return "request"
}

// handleRequest reads a request frame. A complete request is dispatched to
// its handler on a new goroutine; chunks are gathered first.
func (s *Session) handleRequest(br *bufio.Reader, h Header) error {
	if h.Seq == 0 {
		return s.handleFirstChunk(br, h)
	}
	s.servMu.Lock()
	p := s.partial[h.ID]
	s.servMu.Unlock()
	if p == nil || p.stream != (h.Op == OpStreamOpen) {
		return fmt.Errorf("%w: %v chunk %d of unknown request %d", ErrProtocol, h.Op, h.Seq, h.ID)
	}
	if p.rejected {
		if h.Seq != p.g.seq {
			return fmt.Errorf("%w: %s %d chunk %d, expected %d", ErrProtocol, p.what(), h.ID, h.Seq, p.g.seq)
		}
		if p.skipped+int(h.Length) > s.cfg.MaxMessageSize {
			return fmt.Errorf("%w: %s %d exceeds %d bytes", ErrProtocol, p.what(), h.ID, s.cfg.MaxMessageSize)
		}
		if err := skip(br, h.Length); err != nil {
			return err
		}
		p.g.seq++
		p.skipped += int(h.Length)
		p.g.last.Store(time.Now().UnixNano())
		if h.Flags&FlagMore != 0 {
			return nil
		}
		s.servMu.Lock()
		delete(s.partial, h.ID)
		s.servMu.Unlock()
		if p.stream {
			return s.refuseStream(h.ID, codeStreams, "too many streams")
		}
		return s.answerError(h.ID, codeBusy, "no free handler slot")
	}
	if err := p.g.check(h, s.cfg.MaxMessageSize, p.what()); err != nil {
		return err
	}
	if h.Flags&FlagMore != 0 {
		if err := s.reqIn.add(MaxFramePayload); err != nil {
			return err
		}
		p.charged += MaxFramePayload
		seg, err := readSeg(br)
		if err != nil {
			return err
		}
		p.g.push(seg, s)
		return nil
	}
	// The last chunk: the whole payload counts from now until the handler
	// returns.
	total := charge(p.g.size() + int(h.Length))
	if err := s.reqIn.add(total - p.charged); err != nil {
		return err
	}
	payload, err := p.g.finish(br, h, getMsg)
	if err != nil {
		return err
	}
	s.servMu.Lock()
	mine := s.partial[h.ID] == p
	delete(s.partial, h.ID)
	s.servMu.Unlock()
	if !mine {
		// The session ended while the chunk was read, and cancelServing
		// freed the request's slot.
		s.dropPayload(payload, true, total)
		return nil
	}
	if p.stream {
		return s.serveStream(p.h, h.ID, p.deadline, p.arrived, payload, true, total, p.trace)
	}
	return s.dispatch(p.h, h.ID, p.deadline, p.arrived, payload, nil, total, p.trace)
}

func (s *Session) handleFirstChunk(br *bufio.Reader, h Header) error {
	held := 0 // slots taken here and not yet handed on; freed on an error
	err := s.firstChunk(br, h, &held)
	if err != nil && held > 0 {
		if h.Op == OpStreamOpen {
			<-s.sslots
		} else {
			<-s.hslots
		}
	}
	return err
}

// firstChunk is handleFirstChunk; *held is 1 while it holds a slot that
// nothing else will free.
func (s *Session) firstChunk(br *bufio.Reader, h Header, held *int) error {
	stream := h.Op == OpStreamOpen
	trace := s.takeTrace()
	// dispatch checks a request in one frame for a duplicate ID itself,
	// under the lock it takes anyway.
	single := !stream && h.Flags&FlagMore == 0
	if !single {
		if err := s.checkNewID(h.ID, stream); err != nil {
			return err
		}
	}
	var now time.Time // the deadline counts from here; read only if needed
	if h.Deadline > 0 {
		now = time.Now()
	}
	slots := s.hslots
	if stream {
		slots = s.sslots
	}
	slot := false
	select {
	case slots <- struct{}{}:
		slot = true
		*held = 1
	default:
	}
	if h.Flags&FlagMore != 0 {
		// A conforming peer has no more requests and streams opening at
		// once than it has slots for: one beyond that many, even refused,
		// breaks the protocol (and would cost a partial for nothing).
		s.servMu.Lock()
		n := len(s.partial)
		s.servMu.Unlock()
		if n >= s.cfg.MaxConcurrent+s.cfg.MaxStreams {
			return fmt.Errorf("%w: more than %d requests and stream opens arriving in chunks at once", ErrProtocol, n)
		}
		p := &partial{stream: stream, h: h.Handler, deadline: h.Deadline, arrived: now, rejected: !slot, trace: trace}
		if slot {
			if err := s.reqIn.add(MaxFramePayload); err != nil {
				return err
			}
			p.charged = MaxFramePayload
			seg, err := readSeg(br)
			if err != nil {
				return err
			}
			p.g.push(seg, s)
		} else {
			if err := skip(br, h.Length); err != nil {
				return err
			}
			p.g.seq, p.skipped = 1, int(h.Length)
			p.g.last.Store(time.Now().UnixNano())
			s.armReaper()
		}
		s.servMu.Lock()
		closed := s.servClosed
		if !closed {
			s.partial[h.ID] = p
		}
		*held = 0 // the partial holds it, or it is freed just below
		s.servMu.Unlock()
		if closed { // cancelServing has run: it would not free the slot
			if slot {
				<-slots
			}
			p.g.reset()
			s.reqIn.sub(p.charged)
		}
		return nil
	}
	if !slot {
		if single {
			if err := s.checkNewID(h.ID, false); err != nil {
				return err
			}
		}
		if err := skip(br, h.Length); err != nil {
			return err
		}
		if stream {
			return s.refuseStream(h.ID, codeStreams, "too many streams")
		}
		return s.answerError(h.ID, codeBusy, "no free handler slot")
	}
	if stream {
		if h.Length == 0 {
			// No buffer: a stream may live long, and most open empty.
			*held = 0
			return s.serveStream(h.Handler, h.ID, h.Deadline, now, nil, false, 0, trace)
		}
		// A stream's payload counts until its handler returns.
		total := charge(int(h.Length))
		if err := s.reqIn.add(total); err != nil {
			return err
		}
		payload, err := readMsg(br, h.Length)
		if err != nil {
			return err
		}
		*held = 0
		return s.serveStream(h.Handler, h.ID, h.Deadline, now, payload, true, total, trace)
	}
	pb := getBuf(int(h.Length))
	if err := readFull(br, *pb); err != nil {
		putBuf(pb)
		return err
	}
	*held = 0
	return s.dispatch(h.Handler, h.ID, h.Deadline, now, *pb, pb, 0, trace)
}

// checkNewID reports a protocol error if the peer's request or stream ID id
// is in use.
func (s *Session) checkNewID(id uint64, stream bool) error {
	s.servMu.Lock()
	dup := s.inUseLocked(id)
	s.servMu.Unlock()
	if stream && !dup {
		s.strMu.Lock()
		_, dup = s.sstreams[id]
		s.strMu.Unlock()
	}
	if dup {
		return errIDInUse(id)
	}
	return nil
}

// inUseLocked reports whether the peer's request ID id is being served or
// gathered. servMu must be held.
func (s *Session) inUseLocked(id uint64) bool {
	_, serving := s.serving[id]
	_, partial := s.partial[id]
	return serving || partial
}

func errIDInUse(id uint64) error {
	return fmt.Errorf("%w: request ID %d already in use", ErrProtocol, id)
}

// dispatch starts the handler for a complete request; the caller holds a
// handler slot for it. pb, if not nil, is the pooled buffer behind
// payload; charged is what the request counts in reqIn until its handler
// returns (a request gathered from chunks, whose payload, from getMsg,
// is recycled then); trace is the trace context the caller sent.
func (s *Session) dispatch(h handlers.HandlerID, id uint64, deadline uint32, arrived time.Time, payload []byte, pb *[]byte, charged int64, trace *wireTrace) error {
	e := s.reg.Lookup(h)
	var rc *reqCtx
	if e != nil && e.Single != nil {
		rc = &reqCtx{parent: s.cfg.BaseContext, id: id, trace: trace}
		if deadline > 0 {
			rc.deadline = arrived.Add(time.Duration(deadline) * time.Millisecond).UnixNano()
		}
	}
	s.servMu.Lock()
	dup := s.inUseLocked(id)
	if s.servClosed || dup || rc == nil {
		closed := s.servClosed
		s.servMu.Unlock()
		<-s.hslots
		releasePayload(payload, pb, charged)
		s.reqIn.sub(charged)
		switch {
		case closed:
			return nil
		case dup:
			return errIDInUse(id)
		}
		return s.answerError(id, codeUnknown, fmt.Sprintf("unknown handler %v", h))
	}
	s.serving[id] = rc
	s.servMu.Unlock()
	s.stats.dispatched.Add(1)
	j := job{rc: rc, fn: e.Single, h: h, payload: payload, pb: pb, charged: charged, arrived: s.readAt}
	if e.Inline {
		return s.serveInline(j)
	}
	if w := s.workers.take(); w != nil {
		w.jobs <- j // buffered: never blocks
		return nil
	}
	s.handlers.Add(1)
	go s.worker(j)
	return nil
}

// answerError sends an error answer from the reader (a control frame).
func (s *Session) answerError(id uint64, code byte, msg string) error {
	body := appendError(nil, code, msg)
	return s.q.put(context.Background(), nil, Header{Op: OpResponse, Flags: FlagError, ID: id}, body, control)
}

// serve runs one handler and sends its answer.
func (s *Session) serve(j job) {
	rc := j.rc
	o := s.cfg.Observer
	if o != nil {
		o.RequestBegun(j.h, true)
	}
	resp, err, panicked := s.runJob(j)
	if o != nil {
		oerr := err
		if panicked && !isPanic(err) {
			oerr = &panicError{err.Error()}
		}
		o.RequestDone(j.h, true, time.Duration(monoNow()-j.arrived), oerr)
	}
	s.servMu.Lock()
	delete(s.serving, rc.id)
	s.servMu.Unlock()
	cancelled := rc.finish()
	// The slot is free, and the payload no longer counts, before the
	// answer is queued: a caller who has the answer never finds the slot
	// taken, and a peer that reserved the payload's bytes until the answer
	// never sees them still counted here.
	<-s.hslots
	s.reqIn.sub(j.charged)
	s.stats.served.Add(1)

	hdr := Header{Op: OpResponse, ID: rc.id}
	switch {
	case cancelled:
		hdr.Flags, resp = FlagError, appendError(nil, codeCanceled, "canceled by caller")
	case panicked:
		hdr.Flags, resp = FlagError, appendError(nil, codePanic, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		hdr.Flags, resp = FlagError, appendError(nil, codeDeadline, err.Error())
	case err != nil:
		hdr.Flags, resp = FlagError, appendError(nil, codeHandler, err.Error())
	case len(resp) > s.maxSend:
		msg := fmt.Sprintf("response of %d bytes exceeds %d", len(resp), s.maxSend)
		hdr.Flags, resp = FlagError, appendError(nil, codeTooLarge, msg)
	}
	// An answer in chunks counts in the peer's MaxResponseBytes until its
	// last chunk is queued: the peer, reading in order, has then let go
	// of it by the time it reads anything queued later.
	var reserved int64
	if len(resp) > MaxFramePayload {
		reserved = int64(len(resp))
		if err := s.respOut.acquire(context.Background(), s.closing, reserved, "MaxResponseBytes"); err != nil {
			reserved = 0 // the session ended: the send fails too
		}
	}
	_, _ = s.send(context.Background(), hdr, resp) // fails only if the session ended
	s.respOut.release(reserved)
	s.stats.answered.Add(1)
	releasePayload(j.payload, j.pb, j.charged)
}

// releasePayload gives a request's payload back to its pool once its
// handler is done with it: pb's, or, for a request gathered from chunks
// (charged), the message pool's.
func releasePayload(payload []byte, pb *[]byte, charged int64) {
	switch {
	case pb != nil:
		putBuf(pb)
	case charged > 0:
		Recycle(payload)
	}
}

// run calls the handler, turning a panic into an error.
func (s *Session) run(ctx context.Context, fn handlers.SingleHandler, h handlers.HandlerID, payload []byte) (resp []byte, err error, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			s.cfg.Logger.Error("mux: handler panicked", "handler", h.String(), "panic", v, "stack", string(debug.Stack()))
			resp, err, panicked = nil, fmt.Errorf("handler %v panicked: %v", h, v), true
		}
	}()
	resp, err = fn(ctx, payload)
	return resp, err, false
}

// cancelDeadline, as the first payload byte of an OpCancel for a stream,
// says that the caller's deadline passed (SPEC.md, Streams).
const cancelDeadline = 1

// readCancel reads an OpCancel's payload: whether it says the caller's
// deadline passed. Bytes after the first are ignored.
func readCancel(br *bufio.Reader, n uint32) (deadline bool, err error) {
	if n == 0 {
		return false, nil
	}
	b, err := br.ReadByte()
	if err != nil {
		return false, readError(err)
	}
	return b == cancelDeadline, skip(br, n-1)
}

// handleCancel cancels the request id: a running handler sees its context
// cancelled; a request still arriving in chunks is dropped and answered.
// For a stream, deadline says that the caller's deadline passed: the
// handler's context ends with context.DeadlineExceeded.
func (s *Session) handleCancel(id uint64, deadline bool) {
	s.servMu.Lock()
	rc := s.serving[id]
	p := s.partial[id]
	delete(s.partial, id)
	s.servMu.Unlock()
	if rc != nil {
		rc.cancel(context.Canceled)
		return
	}
	if p != nil {
		p.g.reset()
		s.reqIn.sub(p.charged)
		var err error
		if p.stream {
			if !p.rejected {
				<-s.sslots
			}
			err = s.refuseStream(id, codeCanceled, "canceled by caller")
		} else {
			if !p.rejected {
				<-s.hslots
			}
			err = s.answerError(id, codeCanceled, "canceled by caller")
		}
		if err != nil {
			s.fail(err)
		}
		return
	}
	s.cancelStream(id, deadline)
}

// cancelServing cancels every handler's context once the session ended.
func (s *Session) cancelServing() {
	defer s.streamOut.poke() // senders waiting for room see the session end
	s.workers.close()
	s.servMu.Lock()
	s.servClosed = true
	for _, rc := range s.serving {
		rc.end(ctxSessionOver)
	}
	for id, p := range s.partial {
		// The request will never be served: free its slot, so that the
		// gauges of the ended session read 0. Its buffer is the
		// reader's, which may be reading into it.
		delete(s.partial, id)
		switch {
		case p.rejected:
		case p.stream:
			<-s.sslots
		default:
			<-s.hslots
		}
	}
	s.servMu.Unlock()
	s.strMu.Lock()
	for _, ss := range s.sstreams {
		ss.rc.end(ctxSessionOver)
		ss.mu.Lock()
		ss.sessionOver = true
		ss.mu.Unlock()
		ss.wake()
	}
	s.strMu.Unlock()
}

func readFull(br *bufio.Reader, p []byte) error {
	for len(p) > 0 {
		n, err := br.Read(p)
		p = p[n:]
		if err != nil && len(p) > 0 {
			return readError(err)
		}
	}
	return nil
}
