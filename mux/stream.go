package mux

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
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
// NewStream.
//
// Responses delivers the handler's messages in order. It is closed when the
// stream ends: after the handler returned (its error, if any, is the last
// Response), after the caller's context was cancelled (the context's error
// is the last Response), or when the session ended (an error matching
// ErrDisconnected). Responses must be read until it is closed.
//
// Requests carries the caller's messages to the handler; close it to end the
// handler's input. It is nil when the handler takes no input. A send on
// Requests blocks while the handler's input is full (flow control); Send
// does the same but gives up when ctx ends or the stream ends, and is the
// safer way to send. A message's memory belongs to the stream once sent.
//
// Requests and Responses may be used from different goroutines.
type Stream struct {
	Responses <-chan Response
	Requests  chan<- []byte

	cs        *cstream
	closeOnce sync.Once
	err       error // the stream's final error, for Recv
}

var _ handlers.RawStream = (*Stream)(nil)

// Recv returns the next message from Responses, io.EOF once the stream
// ended cleanly, or the error that ended it (again on every later call).
// Recv must not be called concurrently with itself or with reads of
// Responses.
func (st *Stream) Recv() ([]byte, error) {
	if st.err != nil {
		return nil, st.err
	}
	r, ok := <-st.Responses
	switch {
	case !ok:
		st.err = io.EOF
	case r.Err != nil:
		st.err = r.Err
	default:
		return r.Msg, nil
	}
	return nil, st.err
}

// CloseSend closes Requests, ending the handler's input. It may be called
// more than once; it does nothing for a handler without input. Do not also
// close Requests yourself.
func (st *Stream) CloseSend() {
	if st.Requests != nil {
		st.closeOnce.Do(func() { close(st.Requests) })
	}
}

// OpenStream is NewStream returning the handlers.RawStream interface, so
// that typed stream handlers can open streams on a Session.
func (s *Session) OpenStream(ctx context.Context, h handlers.HandlerID, payload []byte) (handlers.RawStream, error) {
	st, err := s.NewStream(ctx, h, payload)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Send sends msg on Requests, waiting for flow-control credit. It returns
// ctx's error if ctx ends first, and ErrStreamEnded if the stream ended.
func (st *Stream) Send(ctx context.Context, msg []byte) error {
	if st.Requests == nil {
		return fmt.Errorf("%w: %v takes no input", ErrStreamEnded, st.cs.h)
	}
	select {
	case st.Requests <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-st.cs.done:
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
	return ferr
}

// Cancel cancels the stream as cancelling its context would.
func (st *Stream) Cancel() { st.cs.cancel() }

// Done is closed once the stream has ended and Responses is closed.
func (st *Stream) Done() <-chan struct{} { return st.cs.done }

// NewStream opens a stream to the peer's stream handler h, sending payload
// as the handler's initial payload. It waits for the peer to accept, so
// the handler's capacities are known (and an unknown handler is an error
// here). ctx governs the whole stream: its deadline travels to the handler,
// and cancelling it cancels the stream.
func (s *Session) NewStream(ctx context.Context, h handlers.HandlerID, payload []byte) (*Stream, error) {
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
	ctx, cancel := context.WithCancel(ctx)
	cs := &cstream{
		s: s, h: h, id: s.nextID.Add(1), cancel: cancel,
		accepted: make(chan struct{}),
		notify:   make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	s.strMu.Lock()
	select {
	case <-s.closing:
		s.strMu.Unlock()
		<-s.cslots
		cancel()
		return nil, s.disconnected()
	default:
	}
	s.cstreams[cs.id] = cs
	// Counted now, under strMu, so that the Add cannot race Close's Wait
	// (fail closes s.closing under strMu too).
	s.handlers.Add(1)
	s.strMu.Unlock()

	sent, err := s.send(ctx, Header{Op: OpStreamOpen, Handler: h, ID: cs.id, Deadline: deadline}, payload)
	if err == nil {
		select {
		case <-cs.accepted:
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.closing:
			err = s.disconnected()
		}
	}
	if err != nil {
		cancel()
		s.handlers.Done()
		s.abandonStream(cs, sent)
		return nil, s.sendError(err)
	}
	if cs.openErr != nil {
		cancel()
		s.handlers.Done()
		return nil, cs.openErr
	}
	cs.resp = make(chan Response)
	st := &Stream{Responses: cs.resp, cs: cs}
	if cs.inCap > 0 {
		cs.reqs = make(chan []byte)
		st.Requests = cs.reqs
	}
	go cs.run(ctx)
	return st, nil
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
		return
	}
	s.strMu.Unlock()
	cs.mu.Lock()
	cs.abandoned = true
	ended := cs.ended
	cs.mu.Unlock()
	if ended {
		s.dropCStream(cs)
		return
	}
	s.control(Header{Op: OpCancel, ID: cs.id})
}

// cstream is the caller's side of a stream.
type cstream struct {
	s        *Session
	h        handlers.HandlerID
	id       uint64
	cancel   context.CancelFunc
	accepted chan struct{} // closed when the accept (or refusal) arrived
	notify   chan struct{} // cap 1: the reader changed something below
	done     chan struct{} // closed when run returns
	resp     chan Response
	reqs     chan []byte

	// Set by the reader before accepted is closed.
	inCap, outCap int
	openErr       error

	mu        sync.Mutex
	abandoned bool     // NewStream gave up before the accept
	queue     [][]byte // handler messages waiting for the caller (≤ outCap)
	partial   []byte   // a message whose chunks are still arriving
	chunk     uint32   // next chunk expected
	credit    int      // messages we may still send
	ended     bool     // OpStreamEnd arrived
	endErr    error
}

// run is the stream's one goroutine on the caller's side: it forwards
// Requests to the peer within credit, hands queued messages to Responses,
// and grants credit back as they are taken.
func (cs *cstream) run(ctx context.Context) {
	s := cs.s
	defer s.handlers.Done()
	defer close(cs.done)
	defer cs.cancel()
	reqs := cs.reqs
	grant := 0
	for {
		cs.mu.Lock()
		var next []byte
		have := len(cs.queue) > 0
		if have {
			next = cs.queue[0]
		}
		ended, endErr, credit := cs.ended, cs.endErr, cs.credit
		cs.mu.Unlock()
		if ended && !have {
			cs.finish(endErr)
			return
		}
		var out chan<- Response
		if have {
			out = cs.resp
		}
		var in <-chan []byte
		if credit > 0 && !ended {
			in = reqs
		}
		select {
		case out <- Response{Msg: next}:
			cs.mu.Lock()
			cs.queue[0] = nil
			cs.queue = cs.queue[1:]
			empty := len(cs.queue) == 0
			cs.mu.Unlock()
			if grant++; empty || grant >= max(1, cs.outCap/2) {
				s.grant(OpStreamCreditOut, cs.id, grant)
				grant = 0
			}
		case msg, ok := <-in:
			if !ok {
				reqs = nil
				s.control(Header{Op: OpStreamCloseIn, ID: cs.id})
				continue
			}
			if err := cs.sendIn(ctx, msg); err != nil {
				cs.abort(ctx, err)
				return
			}
		case <-cs.notify:
		case <-ctx.Done():
			cs.abort(ctx, ctx.Err())
			return
		case <-s.closing:
			cs.deliverLast(s.disconnected())
			return
		}
	}
}

func (cs *cstream) sendIn(ctx context.Context, msg []byte) error {
	if len(msg) > cs.s.maxSend {
		return fmt.Errorf("%w: %v stream message of %d bytes exceeds %d", ErrMessageTooLarge, cs.h, len(msg), cs.s.maxSend)
	}
	cs.mu.Lock()
	cs.credit--
	cs.mu.Unlock()
	_, err := cs.s.send(ctx, Header{Op: OpStreamIn, ID: cs.id}, msg)
	return err
}

// abort ends the stream early with err: the peer is told to cancel, err is
// the last Response, and the state stays (without this goroutine) until
// the peer's OpStreamEnd, so slot accounting stays exact.
func (cs *cstream) abort(ctx context.Context, err error) {
	s := cs.s
	if errors.Is(err, ErrDisconnected) {
		cs.deliverLast(s.disconnected())
		return
	}
	cs.mu.Lock()
	ended := cs.ended
	cs.abandoned = true
	cs.queue = nil
	cs.mu.Unlock()
	// From here the reader drops the state when the peer's end arrives.
	if ended {
		s.dropCStream(cs)
	} else if ctx.Err() != context.DeadlineExceeded {
		s.control(Header{Op: OpCancel, ID: cs.id})
	}
	cs.deliverLast(err)
}

// finish ends a stream the handler ended.
func (cs *cstream) finish(err error) {
	cs.s.dropCStream(cs)
	cs.deliverLast(err)
}

// deliverLast sends err (if any) as the last Response and closes
// Responses. Once the session is over it waits at most CloseTimeout for the
// caller to take the error, so that Close cannot hang on a caller that
// stopped reading.
func (cs *cstream) deliverLast(err error) {
	defer close(cs.resp)
	if err == nil {
		return
	}
	select {
	case cs.resp <- Response{Err: err}:
		return
	case <-cs.s.closing:
	}
	t := time.NewTimer(cs.s.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case cs.resp <- Response{Err: err}:
	case <-t.C:
	}
}

func (s *Session) dropCStream(cs *cstream) {
	s.strMu.Lock()
	if s.cstreams[cs.id] == cs {
		delete(s.cstreams, cs.id)
		<-s.cslots
	}
	s.strMu.Unlock()
}

// forgetStreams drops every stream's state once the session has ended
// (after cancelServing cancelled the served ones), so that Stats reports
// no open streams on a dead session. The streams' goroutines end on their
// own when they see s.closing; stream slots no longer matter.
func (s *Session) forgetStreams() {
	s.strMu.Lock()
	clear(s.cstreams)
	clear(s.sstreams)
	s.strMu.Unlock()
}

func (cs *cstream) wake() {
	select {
	case cs.notify <- struct{}{}:
	default:
	}
}

// control queues a control frame; failing to means the session is over.
func (s *Session) control(h Header) {
	if err := s.q.put(context.Background(), s.closing, h, nil, control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err)
	}
}

// grant sends n messages of credit for stream id.
func (s *Session) grant(op Op, id uint64, n int) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(n))
	if err := s.q.put(context.Background(), s.closing, Header{Op: op, ID: id}, p[:], control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err)
	}
}

// refuseStream answers a stream open with an error accept (final).
func (s *Session) refuseStream(id uint64, code byte, msg string) error {
	return s.q.put(context.Background(), nil, Header{Op: OpStreamAccept, Flags: FlagError, ID: id}, appendError(nil, code, msg), control)
}

// --- reader side, caller streams ---

func (s *Session) lookupC(id uint64) *cstream {
	s.strMu.Lock()
	defer s.strMu.Unlock()
	return s.cstreams[id]
}

func (s *Session) handleStreamAccept(br *bufio.Reader, h Header) error {
	p, err := readPayload(br, h.Length)
	if err != nil {
		return err
	}
	cs := s.lookupC(h.ID)
	if cs == nil {
		return fmt.Errorf("%w: accept for unknown stream %d", ErrProtocol, h.ID)
	}
	select {
	case <-cs.accepted:
		return fmt.Errorf("%w: second accept for stream %d", ErrProtocol, h.ID)
	default:
	}
	if h.Flags&FlagError != 0 {
		cs.openErr = remoteError(cs.h, p)
		s.dropCStream(cs)
		close(cs.accepted)
		return nil
	}
	if len(p) != 8 {
		return fmt.Errorf("%w: stream accept of %d bytes", ErrProtocol, len(p))
	}
	in, out := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
	if in > handlers.MaxStreamCapacity || out == 0 || out > handlers.MaxStreamCapacity {
		return fmt.Errorf("%w: stream %d capacities %d/%d", ErrProtocol, h.ID, in, out)
	}
	cs.inCap, cs.outCap = int(in), int(out)
	cs.mu.Lock()
	cs.credit = cs.inCap
	abandoned := cs.abandoned
	cs.mu.Unlock()
	close(cs.accepted)
	_ = abandoned // NewStream gave up and sent a cancel; the end will follow
	return nil
}

func (s *Session) handleStreamOut(br *bufio.Reader, h Header) error {
	p, err := readPayload(br, h.Length)
	if err != nil {
		return err
	}
	cs := s.lookupC(h.ID)
	if cs == nil {
		return fmt.Errorf("%w: message for unknown stream %d", ErrProtocol, h.ID)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	msg, complete, err := s.gather(&cs.partial, &cs.chunk, h, p)
	if err != nil || !complete || cs.abandoned {
		return err
	}
	if len(cs.queue) >= cs.outCap {
		return fmt.Errorf("%w: stream %d sent beyond its credit", ErrProtocol, h.ID)
	}
	cs.queue = append(cs.queue, msg)
	cs.wake()
	return nil
}

// gather adds one chunk of a stream message; complete reports whether the
// message is whole.
func (s *Session) gather(partial *[]byte, chunk *uint32, h Header, p []byte) (msg []byte, complete bool, err error) {
	if h.Seq != *chunk {
		return nil, false, fmt.Errorf("%w: stream %d chunk %d, expected %d", ErrProtocol, h.ID, h.Seq, *chunk)
	}
	if len(*partial)+len(p) > s.cfg.MaxMessageSize {
		return nil, false, fmt.Errorf("%w: stream %d message exceeds %d bytes", ErrProtocol, h.ID, s.cfg.MaxMessageSize)
	}
	if h.Flags&FlagMore != 0 {
		*partial = append(*partial, p...)
		*chunk++
		return nil, false, nil
	}
	if *partial != nil {
		p = append(*partial, p...)
		*partial = nil
	}
	*chunk = 0
	return p, true, nil
}

func (s *Session) handleStreamEnd(br *bufio.Reader, h Header) error {
	p, err := readPayload(br, h.Length)
	if err != nil {
		return err
	}
	cs := s.lookupC(h.ID)
	if cs == nil {
		return fmt.Errorf("%w: end of unknown stream %d", ErrProtocol, h.ID)
	}
	cs.mu.Lock()
	cs.ended = true
	if h.Flags&FlagError != 0 {
		cs.endErr = remoteError(cs.h, p)
		if cs.endErr.(*RemoteError).code == codeCanceled {
			cs.endErr = context.Canceled
		}
	}
	abandoned := cs.abandoned
	cs.mu.Unlock()
	if abandoned {
		s.dropCStream(cs) // its goroutine is gone (or never ran)
		return nil
	}
	cs.wake()
	return nil
}

func (s *Session) handleCredit(br *bufio.Reader, h Header) error {
	p, err := readPayload(br, h.Length)
	if err != nil {
		return err
	}
	if len(p) != 4 {
		return fmt.Errorf("%w: %v of %d bytes", ErrProtocol, h.Op, len(p))
	}
	n := int(binary.BigEndian.Uint32(p))
	if h.Op == OpStreamCreditIn {
		cs := s.lookupC(h.ID)
		if cs == nil {
			return fmt.Errorf("%w: credit for unknown stream %d", ErrProtocol, h.ID)
		}
		cs.mu.Lock()
		cs.credit += n
		bad := cs.credit > cs.inCap
		cs.mu.Unlock()
		if bad {
			return fmt.Errorf("%w: stream %d credit beyond capacity %d", ErrProtocol, h.ID, cs.inCap)
		}
		cs.wake()
		return nil
	}
	ss := s.lookupS(h.ID)
	if ss == nil {
		return nil // the stream ended as the credit crossed
	}
	ss.mu.Lock()
	ss.credit += n
	bad := ss.credit > ss.outCap
	ss.mu.Unlock()
	if bad {
		return fmt.Errorf("%w: stream %d credit beyond capacity %d", ErrProtocol, h.ID, ss.outCap)
	}
	ss.wake()
	return nil
}

// --- serving side ---

// sstream is the serving side of a stream.
type sstream struct {
	id     uint64
	rc     *reqCtx
	in     chan []byte // to the handler; nil if it takes no input
	out    chan []byte // from the handler
	notify chan struct{}
	hdone  chan struct{} // closed when the handler returned
	herr   error
	inCap  int
	outCap int

	mu        sync.Mutex
	queue     [][]byte // caller messages waiting for the handler (≤ inCap)
	partial   []byte
	chunk     uint32
	inClosed  bool // the caller ended its input
	credit    int  // messages we may still send to the caller
	cancelled bool
}

func (ss *sstream) wake() {
	select {
	case ss.notify <- struct{}{}:
	default:
	}
}

func (s *Session) lookupS(id uint64) *sstream {
	s.strMu.Lock()
	defer s.strMu.Unlock()
	return s.sstreams[id]
}

// openStream starts a stream handler; the caller holds a stream slot.
func (s *Session) openStream(h handlers.HandlerID, id uint64, deadline uint32, arrived time.Time, payload []byte, pb *[]byte) error {
	e := s.reg.Lookup(h)
	if e == nil || e.Stream == nil {
		<-s.sslots
		putBuf(pb)
		return s.refuseStream(id, codeUnknown, fmt.Sprintf("unknown stream handler %v", h))
	}
	sh := e.Stream
	ss := &sstream{
		id: id, rc: &reqCtx{parent: s.cfg.BaseContext, id: id},
		out: make(chan []byte), notify: make(chan struct{}, 1), hdone: make(chan struct{}),
		inCap: sh.InCapacity, outCap: sh.OutCapacity, credit: sh.OutCapacity,
	}
	if deadline > 0 {
		ss.rc.deadline = arrived.Add(time.Duration(deadline) * time.Millisecond).UnixNano()
	}
	if sh.InCapacity > 0 {
		ss.in = make(chan []byte)
	}
	s.strMu.Lock()
	s.servMu.Lock()
	closed := s.servClosed
	s.servMu.Unlock()
	if closed {
		s.strMu.Unlock()
		putBuf(pb)
		return nil
	}
	s.sstreams[id] = ss
	s.strMu.Unlock()
	var acc [8]byte
	binary.BigEndian.PutUint32(acc[:], uint32(sh.InCapacity))
	binary.BigEndian.PutUint32(acc[4:], uint32(sh.OutCapacity))
	if err := s.q.put(context.Background(), nil, Header{Op: OpStreamAccept, ID: id}, acc[:], control); err != nil {
		return err
	}
	s.handlers.Add(2)
	go s.runStreamHandler(ss, sh, h, payload, pb)
	go s.pumpStream(ss)
	return nil
}

func (s *Session) runStreamHandler(ss *sstream, sh *handlers.StreamHandler, h handlers.HandlerID, payload []byte, pb *[]byte) {
	defer s.handlers.Done()
	defer close(ss.hdone)
	defer putBuf(pb)
	defer func() {
		if v := recover(); v != nil {
			s.cfg.Logger.Error("mux: stream handler panicked", "handler", h.String(), "panic", v, "stack", string(debug.Stack()))
			ss.herr = &panicError{fmt.Sprintf("handler %v panicked: %v", h, v)}
		}
	}()
	ss.herr = sh.Handle(ss.rc, payload, ss.in, ss.out)
}

type panicError struct{ msg string }

func (e *panicError) Error() string { return e.msg }

// pumpStream is the stream's goroutine on the serving side: it hands the
// caller's messages to the handler and grants credit as they are taken,
// sends the handler's messages within credit, and ends the stream when the
// handler returns.
func (s *Session) pumpStream(ss *sstream) {
	defer s.handlers.Done()
	grant := 0
	inOpen := ss.in != nil
	for {
		ss.mu.Lock()
		var next []byte
		have := len(ss.queue) > 0
		if have {
			next = ss.queue[0]
		}
		inClosed, credit, cancelled := ss.inClosed, ss.credit, ss.cancelled
		ss.mu.Unlock()
		if !have && inClosed && inOpen {
			close(ss.in)
			inOpen = false
		}
		var in chan<- []byte
		if have {
			in = ss.in
		}
		var out <-chan []byte
		if credit > 0 || cancelled {
			out = ss.out // after a cancel, drain without sending
		}
		select {
		case in <- next:
			ss.mu.Lock()
			ss.queue[0] = nil
			ss.queue = ss.queue[1:]
			empty := len(ss.queue) == 0
			ss.mu.Unlock()
			if grant++; empty || grant >= max(1, ss.inCap/2) {
				s.grant(OpStreamCreditIn, ss.id, grant)
				grant = 0
			}
		case msg := <-out:
			if cancelled {
				continue
			}
			if len(msg) > s.maxSend {
				tooLarge := &RemoteError{code: codeTooLarge, Msg: fmt.Sprintf("stream message of %d bytes exceeds %d", len(msg), s.maxSend)}
				ss.rc.cancel(context.Canceled)
				ss.waitHandler(inOpen)
				s.endStream(ss, tooLarge)
				return
			}
			ss.mu.Lock()
			ss.credit--
			ss.mu.Unlock()
			if _, err := s.send(context.Background(), Header{Op: OpStreamOut, ID: ss.id}, msg); err != nil {
				ss.waitHandler(inOpen) // the session ended: the handler's context is cancelled
				return
			}
		case <-ss.notify:
		case <-ss.hdone:
			s.endStream(ss, ss.herr)
			return
		case <-s.closing:
			ss.waitHandler(inOpen)
			return
		}
	}
}

// waitHandler waits for a handler whose context is cancelled to return,
// ending its input and draining its output so that a handler that ranges
// over in or sends on out without watching ctx still gets out.
func (ss *sstream) waitHandler(inOpen bool) {
	if inOpen {
		close(ss.in)
	}
	for {
		select {
		case <-ss.out:
		case <-ss.hdone:
			return
		}
	}
}

// endStream sends the final OpStreamEnd and frees the stream.
func (s *Session) endStream(ss *sstream, herr error) {
	cancelled := ss.rc.finish()
	ss.mu.Lock()
	cancelled = cancelled || ss.cancelled
	ss.mu.Unlock()
	s.strMu.Lock()
	delete(s.sstreams, ss.id)
	s.strMu.Unlock()
	<-s.sslots
	hdr := Header{Op: OpStreamEnd, ID: ss.id}
	var body []byte
	var re *RemoteError
	var pe *panicError
	switch {
	case cancelled:
		hdr.Flags, body = FlagError, appendError(nil, codeCanceled, "canceled by caller")
	case errors.As(herr, &pe):
		hdr.Flags, body = FlagError, appendError(nil, codePanic, pe.msg)
	case errors.As(herr, &re) && re.code == codeTooLarge:
		hdr.Flags, body = FlagError, appendError(nil, codeTooLarge, re.Msg)
	case errors.Is(herr, context.DeadlineExceeded):
		hdr.Flags, body = FlagError, appendError(nil, codeDeadline, herr.Error())
	case herr != nil:
		hdr.Flags, body = FlagError, appendError(nil, codeHandler, herr.Error())
	}
	if err := s.q.put(context.Background(), s.closing, hdr, body, control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err)
	}
}

func (s *Session) handleStreamIn(br *bufio.Reader, h Header) error {
	p, err := readPayload(br, h.Length)
	if err != nil {
		return err
	}
	ss := s.lookupS(h.ID)
	if ss == nil {
		return nil // the stream ended as the message crossed
	}
	if ss.in == nil {
		return fmt.Errorf("%w: input for stream %d, which takes none", ErrProtocol, h.ID)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	msg, complete, err := s.gather(&ss.partial, &ss.chunk, h, p)
	if err != nil || !complete || ss.cancelled {
		return err
	}
	if ss.inClosed {
		return fmt.Errorf("%w: input for stream %d after its end", ErrProtocol, h.ID)
	}
	if len(ss.queue) >= ss.inCap {
		return fmt.Errorf("%w: stream %d input beyond its credit", ErrProtocol, h.ID)
	}
	ss.queue = append(ss.queue, msg)
	ss.wake()
	return nil
}

func (s *Session) handleCloseIn(id uint64) {
	if ss := s.lookupS(id); ss != nil {
		ss.mu.Lock()
		ss.inClosed = true
		ss.mu.Unlock()
		ss.wake()
	}
}

// cancelStream cancels a served stream at the caller's request.
func (s *Session) cancelStream(id uint64) {
	ss := s.lookupS(id)
	if ss == nil {
		return
	}
	ss.mu.Lock()
	ss.cancelled = true
	ss.queue = nil
	ss.mu.Unlock()
	ss.rc.cancel(context.Canceled)
	ss.wake()
}
