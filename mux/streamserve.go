package mux

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// sstream is the serving side of a stream, in one of two forms.
//
// For a Serve handler (direct) the handler's goroutine is the only one: the
// reader queues input in over and wakes notify; Recv takes it from there,
// granting credit; Send takes credit (waking on sendWake) and queues the
// frame itself; the handler's goroutine ends the stream when it returns.
//
// For a Handle handler the stream has a second goroutine, pump, which takes
// the handler's messages from out (a channel handed to user code needs a
// receiver), moves input that overflowed in, and ends the stream. The
// reader delivers input straight into in while it has room.
type sstream struct {
	rc       reqCtx
	s        *Session
	id       uint64
	in       chan []byte   // to a Handle handler; nil if it takes no input
	out      chan []byte   // from a Handle handler
	notify   chan struct{} // wakes the pump, or a direct stream's Recv
	sendWake chan struct{} // wakes a direct stream's Send; nil for Handle
	sendTok  chan struct{} // held by the direct stream's one Send under way; nil for Handle
	outCap   int
	h        handlers.HandlerID // the stream's handler
	direct   bool               // a Serve handler: no channels, no pump

	// The initial payload, counted in Session.reqIn (charged) until the
	// handler returns. A Handle handler may send the payload itself on
	// out, so the pump may still be copying it after the handler returned:
	// the buffer goes back to the pool (if pooled) when both the handler
	// and the pump are done with it.
	pooled  bool
	pbRefs  atomic.Int32
	payload []byte
	charged int64

	g chunks // a caller's message still arriving; the reader's

	mu       sync.Mutex
	inCr     credit           // the caller's input
	over     msgQueue[[]byte] // input waiting for room in in
	outBytes owedBytes        // what our messages owe the caller's MaxStreamBytes
	credit   int              // messages we may still send to the caller
	herr     error            // what the handler returned, once hdone
	// The handler sent a message too large for the caller: the stream
	// ends with this error, whatever the handler returns.
	sendErr *RemoteError
	// The flags sit together, so that their padding does not push the
	// stream into a larger allocation class.
	watched   bool // in the session's observer (streambytes.go)
	inClosed  bool // the caller ended its input
	inShut    bool // in is closed (only pump closes it)
	cancelled bool
	// The cancel said the caller's deadline passed: the stream ends as
	// its deadline would have ended it.
	byDeadline bool
	hdone      bool // the handler returned
	// The session ended (set by cancelServing, which wakes the pump: the
	// pump does not select on s.closing, a channel every stream would
	// share).
	sessionOver bool
}

// wake wakes whoever waits for the stream's state to change.
func (ss *sstream) wake() {
	signal(ss.notify)
	if ss.sendWake != nil {
		signal(ss.sendWake)
	}
}

// signal leaves a token in ch (capacity 1) unless one is there.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *Session) lookupS(id uint64) *sstream {
	s.strMu.Lock()
	defer s.strMu.Unlock()
	return s.sstreams[id]
}

// serveStream starts a stream handler; the caller holds a stream slot.
// payload is the initial payload (from getMsg if pooled), which counts
// charged bytes in reqIn until the handler returns.
func (s *Session) serveStream(h handlers.HandlerID, id uint64, deadline uint32, arrived time.Time, payload []byte, pooled bool, charged int64, trace *wireTrace) error {
	e := s.reg.Lookup(h)
	if e == nil || e.Stream == nil {
		<-s.sslots
		s.dropPayload(payload, pooled, charged)
		return s.refuseStream(id, codeUnknown, fmt.Sprintf("unknown stream handler %v", h))
	}
	sh := e.Stream
	ss := &sstream{s: s, h: h,
		rc: reqCtx{parent: s.cfg.BaseContext, id: id, trace: trace}, id: id,
		notify: make(chan struct{}, 1),
		outCap: sh.OutCapacity, credit: sh.OutCapacity,
		payload: payload, pooled: pooled, charged: charged,
	}
	ss.inCr.window = sh.InCapacity
	if deadline > 0 {
		ss.rc.deadline = arrived.Add(time.Duration(deadline) * time.Millisecond).UnixNano()
	}
	goroutines := 1
	switch {
	case sh.Serve != nil:
		ss.direct = true
		ss.sendWake = make(chan struct{}, 1)
		ss.sendTok = make(chan struct{}, 1)
	default:
		goroutines = 2
		ss.out = make(chan []byte)
		if sh.InCapacity > 0 {
			ss.in = make(chan []byte, directCap(sh.InCapacity))
		}
	}
	s.strMu.Lock()
	s.servMu.Lock()
	closed := s.servClosed
	s.servMu.Unlock()
	if closed {
		s.strMu.Unlock()
		<-s.sslots
		s.dropPayload(payload, pooled, charged)
		return nil
	}
	s.sstreams[id] = ss
	// Counted under strMu, before fail can close s.closing.
	s.handlers.Add(goroutines)
	s.strMu.Unlock()
	var acc [8]byte
	binary.BigEndian.PutUint32(acc[:], uint32(sh.InCapacity))
	binary.BigEndian.PutUint32(acc[4:], uint32(sh.OutCapacity))
	if err := s.q.put(context.Background(), nil, Header{Op: OpStreamAccept, ID: id}, acc[:], control); err != nil {
		s.handlers.Add(-goroutines)
		return err
	}
	ss.pbRefs.Store(int32(goroutines))
	s.stats.streamsServed.Add(1)
	go s.runStreamHandler(ss, sh, h, payload)
	if !ss.direct {
		go s.pumpStream(ss)
	}
	return nil
}

// releasePayload lets go of the initial payload's buffer for the handler
// or the pump; the last one returns it to the pool.
func (ss *sstream) releasePayload() {
	if ss.pbRefs.Add(-1) == 0 {
		if ss.pooled {
			Recycle(ss.payload)
		}
		ss.payload = nil
	}
}

// dropPayload lets go of the initial payload of a stream refused or never
// started.
func (s *Session) dropPayload(payload []byte, pooled bool, charged int64) {
	if pooled {
		Recycle(payload)
	}
	s.reqIn.sub(charged)
}

func (s *Session) runStreamHandler(ss *sstream, sh *handlers.StreamHandler, h handlers.HandlerID, payload []byte) {
	defer s.handlers.Done()
	var herr error
	defer func() {
		s.stats.streamsReturned.Add(1)
		ss.releasePayload()
		ss.mu.Lock()
		ss.hdone, ss.herr = true, herr
		over := ss.sessionOver
		ss.mu.Unlock()
		switch {
		case !ss.direct:
			ss.wake() // the pump ends the stream
		case !over:
			s.endStream(ss)
			// A goroutine the handler left behind in Recv or Send
			// returns now: the stream's context is done.
			ss.wake()
		}
	}()
	defer s.recoverStreamHandler(h, &herr) // runs first
	if s.ic.stream != nil {
		// The chain, built once, ends in serveStreamLast, which finds the
		// stream through its context; every level recovers its panics.
		herr = s.ic.stream(&ss.rc, s.serverInfo(h, true, ss.rc.trace), payload)
		return
	}
	herr = callStreamHandler(&ss.rc, ss, sh, payload)
}

// directStream is the handlers.ServerStream of a Serve handler.
type directStream struct{ ss *sstream }

// Recv takes the caller's next message from the queue the reader fills.
func (d directStream) Recv(ctx context.Context) ([]byte, error) {
	ss := d.ss
	for {
		ss.mu.Lock()
		if ss.over.len() > 0 && !ss.cancelled {
			msg := ss.over.pop()
			ss.inCr.pushed++
			ss.s.grantInLocked(ss)
			more := ss.over.len() > 0
			ss.mu.Unlock()
			if more {
				signal(ss.notify) // for a concurrent Recv
			}
			return msg, nil
		}
		ended := ss.cancelled || ss.sessionOver
		eof := ss.inClosed || ss.inCr.window == 0
		ss.mu.Unlock()
		if err := ss.ended(ended); err != nil {
			return nil, err
		}
		if eof {
			return nil, io.EOF
		}
		if err := ss.wait(ctx, ss.notify, nil); err != nil {
			return nil, err
		}
	}
}

// Send takes one credit, waiting for it, and queues msg. Concurrent Sends
// take turns (the send token): a message in chunks must not interleave
// with another's, and the messages leave in the order of their turns.
func (d directStream) Send(ctx context.Context, msg []byte) error {
	ss, s := d.ss, d.ss.s
	if len(msg) > s.maxSend {
		return s.refuseOut(ss, len(msg))
	}
	select {
	case ss.sendTok <- struct{}{}:
	default:
		// Another Send holds the token. It returns once it has queued
		// its message or the stream ended, so this wait is bounded by
		// the stream's life; ctx may cut it short.
		select {
		case ss.sendTok <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() { <-ss.sendTok }()
	for {
		ss.mu.Lock()
		ended := ss.cancelled || ss.sessionOver || ss.sendErr != nil
		ok := !ended && ss.credit > 0
		var room <-chan struct{}
		var err error
		if ok {
			// Credit, and room for the message's bytes.
			if ok, room, err = s.tryReserveOut(&ss.outBytes, len(msg), noEnd); ok {
				ss.credit--
			}
		}
		ss.mu.Unlock()
		if err := ss.ended(ended); err != nil {
			return err
		}
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if err := ss.wait(ctx, ss.sendWake, room); err != nil {
			return err
		}
	}
	if err := s.queueOut(ss, msg); err != nil {
		return s.sendError(err)
	}
	return nil
}

// queueOut queues one of the handler's messages, for which it took credit;
// it fails only if the session ended.
func (s *Session) queueOut(ss *sstream, msg []byte) error {
	s.noteMsg(ss.h, true, false)
	if len(msg) <= MaxFramePayload {
		h := Header{Op: OpStreamOut, ID: ss.id}
		return s.q.putSmall(s.closing, &h, msg)
	}
	_, err := s.send(context.Background(), Header{Op: OpStreamOut, ID: ss.id}, msg)
	return err
}

// ended returns the error a direct stream's Recv or Send returns once the
// stream is over (ended: cancelled or the session ended), or once its
// deadline passed; else nil.
func (ss *sstream) ended(ended bool) error {
	if err := ss.rc.Err(); err != nil {
		return err
	}
	if ended {
		return context.Canceled // rc is cancelled right after the flag is set
	}
	return nil
}

// wait waits for a wake-up on ch (or on room, if not nil: room made in
// the caller's MaxStreamBytes), for ctx, or, if the stream has a deadline,
// for the deadline. Cancellation and the session's end wake ch, so the
// stream's own context needs watching only for its deadline.
func (ss *sstream) wait(ctx context.Context, ch chan struct{}, room <-chan struct{}) error {
	var done <-chan struct{}
	if ctx != context.Context(&ss.rc) {
		done = ctx.Done()
	}
	if done == nil && ss.rc.deadline == 0 && room == nil {
		<-ch
		return nil
	}
	var deadline <-chan struct{}
	if ss.rc.deadline != 0 {
		deadline = ss.rc.Done()
	}
	select {
	case <-ch:
		return nil
	case <-room:
		return nil
	case <-done:
		return ctx.Err()
	case <-deadline:
		return ss.rc.Err()
	}
}

// noEnd is tryReserveOut's check for a caller that checked the stream
// itself.
func noEnd() error { return nil }

// refuseOut ends a direct stream whose handler sent a message larger than
// the caller accepts: the handler's context is cancelled, and the stream
// ends with the error once the handler returns.
//
//go:noinline
func (s *Session) refuseOut(ss *sstream, n int) error {
	tooLarge := &RemoteError{code: codeTooLarge, Msg: fmt.Sprintf("stream message of %d bytes exceeds %d", n, s.maxSend)}
	ss.mu.Lock()
	if ss.sendErr == nil {
		ss.sendErr = tooLarge
	}
	ss.mu.Unlock()
	ss.rc.cancel(context.Canceled)
	ss.wake()
	return fmt.Errorf("%w: stream message of %d bytes exceeds %d", ErrMessageTooLarge, n, s.maxSend)
}

type panicError struct{ msg string }

func (e *panicError) Error() string { return e.msg }

// pumpStream is the stream's goroutine on the serving side: it moves the
// caller's messages that overflowed in, granting credit as the handler
// takes them, sends the handler's messages within credit (and within the
// caller's MaxStreamBytes: a message that must wait for room there is held
// while the input keeps moving), and ends the stream when the handler
// returns.
func (s *Session) pumpStream(ss *sstream) {
	defer s.handlers.Done()
	defer ss.releasePayload() // it may have copied the payload, sent on out
	var held []byte           // a message of the handler's waiting for room
	for {
		ss.mu.Lock()
		var next []byte
		have := ss.over.len() > 0
		if have {
			next = ss.over.buf[ss.over.head]
		} else if (ss.inClosed || ss.cancelled) && !ss.inShut && ss.in != nil {
			// The caller ended its input, or cancelled: a handler that
			// ranges over in without watching ctx gets out too.
			ss.inShut = true
			close(ss.in)
		}
		credit, cancelled, hdone, over := ss.credit, ss.cancelled, ss.hdone, ss.sessionOver
		var room <-chan struct{}
		if held != nil && !cancelled && !over {
			ok, wait, err := s.tryReserveOut(&ss.outBytes, len(held), noEnd)
			switch {
			case err != nil:
				ss.mu.Unlock()
				s.outTooLarge(ss, len(held), err.Error())
				return
			case ok:
				ss.credit--
				ss.mu.Unlock()
				msg := held
				held = nil
				if err := s.queueOut(ss, msg); err != nil {
					ss.waitHandler() // the session ended: the handler's context is cancelled
					return
				}
				continue
			}
			room = wait
		}
		ss.mu.Unlock()
		if over {
			ss.waitHandler()
			return
		}
		if cancelled {
			held = nil // dropped: the caller gave up
		}
		if hdone && held == nil {
			s.endStream(ss)
			return
		}
		var in chan<- []byte
		if have {
			in = ss.in
		}
		var out <-chan []byte
		if held == nil && (credit > 0 || cancelled) {
			out = ss.out // after a cancel, drain without sending
		}
		select {
		case in <- next:
			ss.mu.Lock()
			if ss.over.len() > 0 { // else a cancel dropped the queue meanwhile
				ss.over.pop()
			}
			ss.inCr.pushed++
			s.grantInLocked(ss)
			ss.mu.Unlock()
		case msg := <-out:
			if cancelled {
				continue
			}
			if len(msg) > s.maxSend {
				s.outTooLarge(ss, len(msg), "")
				return
			}
			held = msg // sent at the top of the loop, once it fits
			if ss.in != nil {
				ss.mu.Lock()
				s.grantInLocked(ss) // the handler may have taken input meanwhile
				ss.mu.Unlock()
			}
		case <-room:
		case <-ss.notify:
		}
	}
}

// outTooLarge ends a stream whose handler sent a message larger than the
// caller accepts (why, if not empty, says how).
//
//go:noinline
func (s *Session) outTooLarge(ss *sstream, n int, why string) {
	if why == "" {
		why = fmt.Sprintf("stream message of %d bytes exceeds %d", n, s.maxSend)
	}
	tooLarge := &RemoteError{code: codeTooLarge, Msg: why}
	ss.rc.cancel(context.Canceled)
	ss.waitHandler()
	ss.mu.Lock()
	ss.sendErr = tooLarge
	ss.mu.Unlock()
	s.endStream(ss)
}

// grantInLocked grants the caller the input credit the handler freed.
func (s *Session) grantInLocked(ss *sstream) {
	if ss.cancelled || ss.inClosed {
		return
	}
	if g := s.grantable(&ss.inCr, len(ss.in)); g > 0 {
		s.grant(OpStreamCreditIn, ss.id, g)
	}
	s.watchS(ss)
}

// waitHandler waits for a handler whose context is cancelled to return,
// ending its input and draining its output so that a handler that ranges
// over in or sends on out without watching ctx still gets out.
func (ss *sstream) waitHandler() {
	ss.mu.Lock()
	dropMsgs(&ss.over)
	if ss.in != nil && !ss.inShut {
		ss.inShut = true
		close(ss.in)
	}
	ss.mu.Unlock()
	for {
		ss.mu.Lock()
		hdone := ss.hdone
		ss.mu.Unlock()
		if hdone {
			return
		}
		select {
		case <-ss.out:
		case <-ss.notify:
		}
	}
}

// endStream sends the final OpStreamEnd and frees the stream. It first
// waits until the caller has taken the stream's messages, all but what
// fits the caller's stream reserve (the caller grants each one it takes
// while the stream owes more): once the stream ended, the caller grants no
// more credit, so what it still holds must not count in its
// MaxStreamBytes. The caller's cancel, or the session's end, ends the wait.
func (s *Session) endStream(ss *sstream) {
	owes := func() bool {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		return s.overReserve(&ss.outBytes) && !ss.cancelled && !ss.sessionOver
	}
	for owes() {
		// Grants that return bytes beyond the reserve, the caller's
		// cancel and the session's end all close wait (taken before the
		// second look, so that none is missed).
		wait := s.streamOut.waitCh()
		if !owes() {
			break
		}
		<-wait
	}
	cancelled := ss.rc.finish()
	ss.mu.Lock()
	cancelled = cancelled || ss.cancelled && !ss.byDeadline
	herr, tooLarge := ss.herr, ss.sendErr
	dropMsgs(&ss.over)
	s.dropIn(&ss.inCr.bytes) // the input not taken is dropped: it no longer counts
	s.clearOut(&ss.outBytes) // within the caller's reserve, which does not count
	ss.mu.Unlock()
	s.strMu.Lock()
	if s.sstreams[ss.id] == ss {
		delete(s.sstreams, ss.id)
	}
	s.strMu.Unlock()
	<-s.sslots
	// The payload no longer counts once the handler returned, before the
	// end is queued (the caller releases its reservation on the end). The
	// pump may still copy it (releasePayload).
	s.reqIn.sub(ss.charged)
	hdr := Header{Op: OpStreamEnd, ID: ss.id}
	var body []byte
	var re *RemoteError
	var pe *panicError
	switch {
	case tooLarge != nil:
		// The stream's own refusal, which cancelled the handler's context.
		hdr.Flags, body = FlagError, appendError(nil, codeTooLarge, tooLarge.Msg)
	case cancelled:
		hdr.Flags, body = FlagError, appendError(nil, codeCanceled, "canceled by caller")
	case herr == nil:
	case errors.As(herr, &pe):
		hdr.Flags, body = FlagError, appendError(nil, codePanic, pe.msg)
	case errors.As(herr, &re) && re.code == codeTooLarge:
		hdr.Flags, body = FlagError, appendError(nil, codeTooLarge, re.Msg)
	case errors.Is(herr, context.DeadlineExceeded):
		hdr.Flags, body = FlagError, appendError(nil, codeDeadline, herr.Error())
	default:
		hdr.Flags, body = FlagError, appendError(nil, codeHandler, herr.Error())
	}
	if err := s.q.put(context.Background(), s.closing, hdr, body, control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err)
	}
}
