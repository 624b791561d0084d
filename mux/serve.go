package mux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// partial is a request whose chunks are still arriving.
type partial struct {
	stream   bool // OpStreamOpen rather than OpRequest
	h        handlers.HandlerID
	deadline uint32
	arrived  time.Time // first chunk; the deadline counts from here
	buf      []byte
	seq      uint32 // next chunk expected
	rejected bool   // no handler slot: discard the chunks, then answer busy
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
	switch {
	case p == nil || p.stream != (h.Op == OpStreamOpen):
		return fmt.Errorf("%w: %v chunk %d of unknown request %d", ErrProtocol, h.Op, h.Seq, h.ID)
	case h.Seq != p.seq:
		return fmt.Errorf("%w: request %d chunk %d, expected %d", ErrProtocol, h.ID, h.Seq, p.seq)
	case len(p.buf)+int(h.Length) > s.cfg.MaxMessageSize:
		return fmt.Errorf("%w: request %d exceeds %d bytes", ErrProtocol, h.ID, s.cfg.MaxMessageSize)
	}
	p.seq++
	if p.rejected {
		if err := skip(br, h.Length); err != nil {
			return err
		}
	} else {
		n := len(p.buf)
		p.buf = append(p.buf, make([]byte, h.Length)...)
		if err := readFull(br, p.buf[n:]); err != nil {
			return err
		}
	}
	if h.Flags&FlagMore != 0 {
		return nil
	}
	s.servMu.Lock()
	delete(s.partial, h.ID)
	s.servMu.Unlock()
	if p.stream {
		if p.rejected {
			return s.refuseStream(h.ID, codeStreams, "too many streams")
		}
		return s.openStream(p.h, h.ID, p.deadline, p.arrived, p.buf, nil)
	}
	if p.rejected {
		return s.answerError(h.ID, codeBusy, "no free handler slot")
	}
	return s.dispatch(p.h, h.ID, p.deadline, p.arrived, p.buf, nil)
}

func (s *Session) handleFirstChunk(br *bufio.Reader, h Header) error {
	stream := h.Op == OpStreamOpen
	s.servMu.Lock()
	_, dup := s.serving[h.ID]
	if _, ok := s.partial[h.ID]; ok {
		dup = true
	}
	s.servMu.Unlock()
	if stream && !dup {
		s.strMu.Lock()
		_, dup = s.sstreams[h.ID]
		s.strMu.Unlock()
	}
	if dup {
		return fmt.Errorf("%w: request ID %d already in use", ErrProtocol, h.ID)
	}
	now := time.Now()
	slots := s.hslots
	if stream {
		slots = s.sslots
	}
	slot := false
	select {
	case slots <- struct{}{}:
		slot = true
	default:
	}
	if h.Flags&FlagMore != 0 {
		p := &partial{stream: stream, h: h.Handler, deadline: h.Deadline, arrived: now, seq: 1, rejected: !slot}
		if slot {
			p.buf = make([]byte, h.Length, 2*int(h.Length))
			if err := readFull(br, p.buf); err != nil {
				return err
			}
		} else if err := skip(br, h.Length); err != nil {
			return err
		}
		s.servMu.Lock()
		s.partial[h.ID] = p
		s.servMu.Unlock()
		return nil
	}
	if !slot {
		if err := skip(br, h.Length); err != nil {
			return err
		}
		if stream {
			return s.refuseStream(h.ID, codeStreams, "too many streams")
		}
		return s.answerError(h.ID, codeBusy, "no free handler slot")
	}
	pb := getBuf(int(h.Length))
	if err := readFull(br, *pb); err != nil {
		putBuf(pb)
		return err
	}
	if stream {
		return s.openStream(h.Handler, h.ID, h.Deadline, now, *pb, pb)
	}
	return s.dispatch(h.Handler, h.ID, h.Deadline, now, *pb, pb)
}

// dispatch starts the handler for a complete request; the caller holds a
// handler slot for it. pb, if not nil, is the pooled buffer behind payload.
func (s *Session) dispatch(h handlers.HandlerID, id uint64, deadline uint32, arrived time.Time, payload []byte, pb *[]byte) error {
	e := s.reg.Lookup(h)
	if e == nil || e.Single == nil {
		<-s.hslots
		putBuf(pb)
		return s.answerError(id, codeUnknown, fmt.Sprintf("unknown handler %v", h))
	}
	rc := &reqCtx{parent: s.cfg.BaseContext, id: id}
	if deadline > 0 {
		rc.deadline = arrived.Add(time.Duration(deadline) * time.Millisecond).UnixNano()
	}
	s.servMu.Lock()
	if s.servClosed {
		s.servMu.Unlock()
		<-s.hslots
		putBuf(pb)
		return nil
	}
	s.serving[id] = rc
	s.servMu.Unlock()
	j := job{rc: rc, fn: e.Single, h: h, payload: payload, pb: pb}
	select {
	case s.jobs <- j: // an idle worker took it
	default:
		s.handlers.Add(1)
		go s.worker(j)
	}
	return nil
}

// job is a request handed to a worker.
type job struct {
	rc      *reqCtx
	fn      handlers.SingleHandler
	h       handlers.HandlerID
	payload []byte
	pb      *[]byte
}

// workerIdle is how long a worker waits for another request before it
// exits. Reusing workers spares a goroutine start and its stack growth per
// request.
const workerIdle = 5 * time.Second

// worker runs j, then further jobs handed to it, until it has been idle for
// workerIdle or the session ended.
func (s *Session) worker(j job) {
	defer s.handlers.Done()
	var idle *time.Timer
	for {
		s.serve(j)
		if idle == nil {
			idle = time.NewTimer(workerIdle)
			defer idle.Stop()
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case j = <-s.jobs:
		case <-idle.C:
			return
		case <-s.closing:
			return
		}
	}
}

// answerError sends an error answer from the reader (a control frame).
func (s *Session) answerError(id uint64, code byte, msg string) error {
	body := appendError(nil, code, msg)
	return s.q.put(context.Background(), nil, Header{Op: OpResponse, Flags: FlagError, ID: id}, body, control)
}

// serve runs one handler and sends its answer.
func (s *Session) serve(j job) {
	rc := j.rc
	resp, err, panicked := s.run(rc, j.fn, j.h, j.payload)
	s.servMu.Lock()
	delete(s.serving, rc.id)
	s.servMu.Unlock()
	cancelled := rc.finish()
	<-s.hslots
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
	_, _ = s.send(context.Background(), hdr, resp) // fails only if the session ended
	putBuf(j.pb)
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

// handleCancel cancels the request id: a running handler sees its context
// cancelled; a request still arriving in chunks is dropped and answered.
func (s *Session) handleCancel(id uint64) {
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
	s.cancelStream(id)
}

// cancelServing cancels every handler's context once the session ended.
func (s *Session) cancelServing() {
	s.servMu.Lock()
	s.servClosed = true
	for _, rc := range s.serving {
		rc.cancel(context.Canceled)
	}
	for id := range s.partial {
		delete(s.partial, id) // the session is over: slots no longer matter
	}
	s.servMu.Unlock()
	s.strMu.Lock()
	for _, ss := range s.sstreams {
		ss.rc.cancel(context.Canceled)
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

// reqCtx is a handler's context: the caller's deadline, cancelled by the
// caller's OpCancel or the session's end, and values from BaseContext. Its
// Done channel and deadline timer are made only if the handler asks for
// Done, so a handler that never waits costs one small allocation.
type reqCtx struct {
	parent   context.Context
	id       uint64
	deadline int64 // Unix nanoseconds; 0: none

	mu    sync.Mutex
	done  chan struct{}
	err   error
	timer *time.Timer
}

func (c *reqCtx) Deadline() (time.Time, bool) {
	if c.deadline == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, c.deadline), true
}
func (c *reqCtx) Value(key any) any { return c.parent.Value(key) }

func (c *reqCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		switch {
		case c.err != nil:
			close(c.done)
		case c.deadline != 0:
			c.timer = time.AfterFunc(time.Until(time.Unix(0, c.deadline)), func() { c.cancel(context.DeadlineExceeded) })
		}
	}
	return c.done
}

func (c *reqCtx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err == nil && c.deadline != 0 && time.Now().UnixNano() >= c.deadline {
		c.cancel(context.DeadlineExceeded)
		return c.Err()
	}
	return err
}

func (c *reqCtx) String() string { return fmt.Sprintf("mux.request(%d)", c.id) }

// cancel records err unless an error is already recorded.
func (c *reqCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		if c.done != nil {
			close(c.done)
		}
	}
	if c.timer != nil {
		c.timer.Stop()
	}
}

// finish cancels the context once the handler returned (as net/http does
// for a request's context) and reports whether the caller had cancelled it.
func (c *reqCtx) finish() (cancelled bool) {
	c.mu.Lock()
	cancelled = c.err == context.Canceled
	c.mu.Unlock()
	c.cancel(context.Canceled)
	return cancelled
}
