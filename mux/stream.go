package mux

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
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
// Response), after the caller's context was cancelled (the context's error
// is the last Response), or when the session ended (an error matching
// ErrDisconnected). Responses must be read until it is closed.
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
	case r.Err != nil:
		st.err = r.Err
	default:
		st.taken()
		return r.Msg, nil
	}
	return nil, st.err
}

// taken grants credit for messages the caller took, once half the window
// was taken: Recv sees what a plain read of Responses does not, so the
// handler's credit comes back before it runs out.
func (cs *cstream) taken() {
	cs.mu.Lock()
	if !cs.final {
		if g := cs.out.grantable(len(cs.resp)); g > 0 {
			cs.s.grant(OpStreamCreditOut, cs.id, g)
		}
	}
	cs.mu.Unlock()
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
	st, err := s.openStream(ctx, h, payload, false)
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
	return ferr
}

// Cancel cancels the stream as cancelling its context would.
func (st *Stream) Cancel() { st.abort(context.Canceled) }

// Done is closed once the stream has ended; Responses is closed right
// after.
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
func (s *Session) NewStream(ctx context.Context, h handlers.HandlerID, payload []byte) (*Stream, error) {
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
	st := &Stream{}
	cs := &st.cstream
	cs.s, cs.h, cs.id = s, h, s.nextID.Add(1)
	cs.sig = make(chan struct{}, 1)
	s.strMu.Lock()
	select {
	case <-s.closing:
		s.strMu.Unlock()
		<-s.cslots
		return nil, s.disconnected()
	default:
	}
	s.cstreams[cs.id] = cs
	s.strMu.Unlock()

	sent, err := s.send(ctx, Header{Op: OpStreamOpen, Handler: h, ID: cs.id, Deadline: deadline}, payload)
	if err == nil {
		select {
		case <-cs.sig:
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
	if !s.commitC(cs, int64(cs.out.window)*int64(s.cfg.MaxMessageSize)) {
		cs.mu.Lock()
		cs.final = true // nobody reads resp: drop until the end
		cs.mu.Unlock()
		s.control(Header{Op: OpCancel, ID: cs.id})
		return nil, fmt.Errorf("%w: %v: stream buffer budget of %d bytes exhausted (Config.MaxStreamBytes)", ErrTooManyStreams, h, s.cfg.MaxStreamBytes)
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
		if cs.final {
			cs.mu.Unlock()
			stop()
		} else {
			cs.stop = stop
			cs.mu.Unlock()
		}
	}
	return st, nil
}

// commit reserves n bytes of stream buffering under Config.MaxStreamBytes.
func (s *Session) commit(n int64) bool {
	s.strMu.Lock()
	defer s.strMu.Unlock()
	return s.commitLocked(n)
}

func (s *Session) commitLocked(n int64) bool {
	if s.cfg.MaxStreamBytes > 0 && s.committed+n > s.cfg.MaxStreamBytes {
		return false
	}
	s.committed += n
	return true
}

// commitC is commit for a stream we opened, recorded in cs.commit (under
// strMu, like the release in dropCStream); a stream that already ended
// commits nothing.
func (s *Session) commitC(cs *cstream, n int64) bool {
	s.strMu.Lock()
	defer s.strMu.Unlock()
	if s.cstreams[cs.id] != cs {
		return true
	}
	if !s.commitLocked(n) {
		return false
	}
	cs.commit = n
	return true
}

func (s *Session) uncommit(n int64) {
	s.strMu.Lock()
	s.committed -= n
	s.strMu.Unlock()
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
		return
	}
	s.strMu.Unlock()
	cs.mu.Lock()
	// Nobody will read Responses: the stream is final at once, so that
	// its accept and end drop what they bring instead of delivering it
	// (into a channel nobody reads, by a forwarder that would wait there
	// until the session ends).
	if !cs.final {
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

// Buffering of stream messages. The reader hands a complete message
// straight to the consumer's channel (Responses, or the handler's input)
// when the channel has room, and otherwise to an overflow queue that a
// goroutine moves into the channel as the consumer takes messages. The
// channel holds at most min(capacity-1, directSlots) messages, so that
// when the sender's credit is used up, either some message has been taken
// (and the reader grants credit for it) or one waits in the overflow
// queue, whose goroutine sees the next one taken: credit always flows
// back, although nothing watches the consumer's channel.
const directSlots = 4

func directCap(capacity int) int { return min(capacity-1, directSlots) }

// msgQueue is a FIFO of messages: a slice used as a queue whose storage is
// reused once it empties, so a steady stream allocates nothing.
type msgQueue[T any] struct {
	buf  []T
	head int
}

func (q *msgQueue[T]) len() int { return len(q.buf) - q.head }

func (q *msgQueue[T]) push(v T) { q.buf = append(q.buf, v) }

func (q *msgQueue[T]) pop() T {
	var zero T
	v := q.buf[q.head]
	q.buf[q.head] = zero
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
	return v
}

func (q *msgQueue[T]) clear() {
	clear(q.buf)
	q.buf, q.head = nil, 0
}

// credit is one direction's flow-control account, kept by the receiver:
// the sender may have window messages that were not granted back.
type credit struct {
	window   int    // the capacity
	received uint64 // messages received
	granted  uint64 // messages granted back
	pushed   uint64 // messages put into the consumer's channel
}

// grantable returns how much credit to grant now, given the consumer's
// channel length: what was taken and not granted, once that is half the
// window, or at once if the sender has no credit left.
func (c *credit) grantable(inChan int) int {
	if uint64(inChan) > c.pushed {
		return 0
	}
	taken := c.pushed - uint64(inChan)
	g := int(taken - c.granted)
	if g <= 0 {
		return 0
	}
	if g >= max(1, c.window/2) || c.received-c.granted >= uint64(c.window) {
		c.granted += uint64(g)
		return g
	}
	return 0
}

// full reports whether a message arriving now exceeds the sender's credit.
func (c *credit) full() bool { return c.received-c.granted >= uint64(c.window) }

// cstream is the caller's side of a stream. It has no goroutine of its
// own: the reader delivers the handler's messages into resp, Send puts the
// caller's straight on the writer's queue, and a goroutine runs only while
// messages overflow resp (and, for NewStream, to forward Requests).
type cstream struct {
	s   *Session
	h   handlers.HandlerID
	id  uint64
	sig chan struct{} // cap 1: the accept arrived; then the send token

	// Set by the reader before it signals the accept.
	inCap   int
	resp    chan Response
	openErr error

	mu        sync.Mutex
	opened    bool // NewStream returned the stream
	out       credit
	over      msgQueue[Response] // messages waiting for room in resp
	fwd       bool               // a goroutine is moving over into resp
	partial   []byte             // a message whose chunks are still arriving
	chunk     uint32             // next chunk expected
	inCredit  int                // messages we may still send
	parked    bool               // the send token waits for credit
	inClosed  bool               // our input ended
	ended     bool               // OpStreamEnd (or a refusal) arrived
	final     bool               // the last Response is decided (or nobody reads them): drop what arrives
	finalErr  error              // it (nil: Responses just closes)
	pending   bool               // the final is still to be delivered by the forwarder
	delivered bool               // Responses is closed
	done      chan struct{}      // closed with Responses; made on demand
	stop      func() bool        // stops the AfterFunc watching ctx
	commit    int64              // of Session.committed; guarded by Session.strMu
}

// send sends one message on the stream within credit.
func (cs *cstream) send(ctx context.Context, msg []byte) error {
	if err := cs.checkSize(msg); err != nil {
		return err
	}
	select {
	case <-cs.sig:
	default:
		select {
		case <-cs.sig:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return cs.sendHeld(ctx, msg)
}

func (cs *cstream) checkSize(msg []byte) error {
	if len(msg) > cs.s.maxSend {
		return fmt.Errorf("%w: %v stream message of %d bytes exceeds %d", ErrMessageTooLarge, cs.h, len(msg), cs.s.maxSend)
	}
	return nil
}

// sendHeld sends msg holding the send token (which it releases): the
// token is there only while there is credit, so that one sender at a time
// puts its message (all its chunks) on the queue.
func (cs *cstream) sendHeld(ctx context.Context, msg []byte) error {
	s := cs.s
	cs.mu.Lock()
	if cs.final || cs.inClosed {
		cs.releaseTokenLocked()
		cs.mu.Unlock()
		return ErrStreamEnded
	}
	cs.inCredit--
	cs.mu.Unlock()
	sent, err := s.send(ctx, Header{Op: OpStreamIn, ID: cs.id}, msg)
	cs.mu.Lock()
	if !sent {
		cs.inCredit++
	}
	cs.releaseTokenLocked()
	cs.mu.Unlock()
	if err != nil {
		if sent {
			cs.abort(s.sendError(err)) // half a message went out
		}
		return s.sendError(err)
	}
	return nil
}

// releaseTokenLocked puts the send token back if a send may proceed (or
// must learn that the stream ended), else parks it until credit arrives.
func (cs *cstream) releaseTokenLocked() {
	if !cs.opened || cs.inCap == 0 {
		return
	}
	if cs.inCredit > 0 || cs.final || cs.inClosed {
		cs.parked = false
		select {
		case cs.sig <- struct{}{}:
		default:
		}
		return
	}
	cs.parked = true
}

// closeSend ends the caller's input.
func (cs *cstream) closeSend() {
	cs.mu.Lock()
	if cs.inCap == 0 || cs.inClosed || cs.final {
		cs.mu.Unlock()
		return
	}
	cs.inClosed = true
	cs.releaseTokenLocked()
	cs.mu.Unlock()
	cs.s.control(Header{Op: OpStreamCloseIn, ID: cs.id})
}

// forwardRequests moves the messages sent on Requests to the peer, for a
// stream opened by NewStream. It takes a message from Requests only while
// it holds the send token, that is while there is credit, so that a send
// on Requests blocks while the handler's input is full.
func (cs *cstream) forwardRequests(ctx context.Context, reqs <-chan []byte) {
	defer cs.s.handlers.Done()
	for {
		select {
		case <-cs.sig:
		case <-cs.done:
			return
		}
		select {
		case msg, ok := <-reqs:
			if !ok {
				cs.mu.Lock()
				cs.releaseTokenLocked()
				cs.mu.Unlock()
				cs.closeSend()
				return
			}
			if err := cs.checkSize(msg); err != nil {
				cs.mu.Lock()
				cs.releaseTokenLocked()
				cs.mu.Unlock()
				cs.abort(err) // the only way to tell a sender on Requests
				return
			}
			if err := cs.sendHeld(ctx, msg); err != nil {
				return
			}
		case <-cs.done:
			return
		}
	}
}

// abort ends the stream early with err: the peer is told to cancel (unless
// err is a deadline, which the peer sees too, or the session is gone), the
// messages not yet taken are dropped, and err is the last Response. The
// state stays until the peer's OpStreamEnd, so slot accounting stays exact.
func (cs *cstream) abort(err error) {
	s := cs.s
	cs.mu.Lock()
	if cs.final {
		cs.mu.Unlock()
		return
	}
	ended := cs.ended
	cs.finishLocked(err, true, false)
	cs.mu.Unlock()
	switch {
	case ended:
		s.dropCStream(cs)
	case errors.Is(err, ErrDisconnected):
	case err != context.DeadlineExceeded:
		s.control(Header{Op: OpCancel, ID: cs.id})
	}
}

// finishLocked decides the stream's last Response: err, or just the close
// of Responses if err is nil. With drop, messages not yet taken are
// dropped. The final goes into resp at once if it fits, else the
// forwarder (running, or started now) delivers it after the messages.
//
// force is set when called from fail (endStreams), which may start
// goroutines although the session is closing; otherwise, if the session is
// closing, the final stays pending and endStreams starts its forwarder.
func (cs *cstream) finishLocked(err error, drop, force bool) {
	cs.final, cs.finalErr = true, err
	if cs.stop != nil {
		cs.stop()
		cs.stop = nil
	}
	cs.releaseTokenLocked()
	if cs.resp == nil {
		return // not accepted: NewStream returns the error
	}
	if drop {
		cs.over.clear()
		for len(cs.resp) > 0 {
			select {
			case <-cs.resp:
			default:
			}
		}
	}
	if cs.fwd {
		cs.pending = true
		return
	}
	if cs.over.len() == 0 {
		if err == nil {
			cs.closeRespLocked()
			return
		}
		select {
		case cs.resp <- Response{Err: err}: // room, or a receiver waiting
			cs.closeRespLocked()
			return
		default:
		}
	}
	cs.pending = true
	cs.startForwarderLocked(force)
}

func (cs *cstream) closeRespLocked() {
	cs.delivered = true
	if cs.done != nil {
		close(cs.done)
	}
	close(cs.resp)
}

// deliverLocked hands a message to the caller: into resp if it has room
// and nothing waits before it, else to the overflow queue. Reader only.
func (cs *cstream) deliverLocked(msg []byte) {
	if !cs.fwd {
		select {
		case cs.resp <- Response{Msg: msg}: // room, or a receiver waiting
			cs.out.pushed++
			return
		default:
		}
	}
	cs.over.push(Response{Msg: msg})
	if !cs.fwd {
		cs.startForwarderLocked(false)
	}
}

// startForwarderLocked starts the goroutine that empties the overflow
// queue. Unless force, it starts none once the session is closing: then
// endStreams, which runs after, starts it with force.
func (cs *cstream) startForwarderLocked(force bool) {
	if force {
		cs.s.handlers.Add(1)
	} else if !cs.s.track() {
		return
	}
	cs.fwd = true
	go cs.forward()
}

// forward moves overflowed messages, then a pending final, into resp as
// the caller takes them, granting credit as it goes; it exits when the
// overflow queue is empty.
func (cs *cstream) forward() {
	s := cs.s
	defer s.handlers.Done()
	for {
		cs.mu.Lock()
		if cs.over.len() == 0 {
			cs.fwd = false
			if !cs.pending {
				cs.mu.Unlock()
				return
			}
			cs.pending = false
			err := cs.finalErr
			cs.mu.Unlock()
			if err != nil {
				cs.push(Response{Err: err})
			}
			cs.mu.Lock()
			cs.closeRespLocked()
			cs.mu.Unlock()
			return
		}
		r := cs.over.pop()
		cs.mu.Unlock()
		if !cs.push(r) {
			cs.mu.Lock()
			cs.over.clear()
			cs.fwd = false
			if !cs.delivered {
				cs.final, cs.pending = true, false
				cs.closeRespLocked()
			}
			cs.mu.Unlock()
			return
		}
		cs.mu.Lock()
		cs.out.pushed++
		if !cs.final {
			if g := cs.out.grantable(len(cs.resp)); g > 0 {
				s.grant(OpStreamCreditOut, cs.id, g)
			}
		}
		cs.mu.Unlock()
	}
}

// push sends r on resp. Once the session is over it waits at most
// CloseTimeout for the caller to take it, so that Close cannot hang on a
// caller that stopped reading; it reports false if it gave up.
func (cs *cstream) push(r Response) bool {
	select {
	case cs.resp <- r:
		return true
	case <-cs.s.closing:
	}
	t := time.NewTimer(cs.s.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case cs.resp <- r:
		return true
	case <-t.C:
		return false
	}
}

func (s *Session) dropCStream(cs *cstream) {
	s.strMu.Lock()
	if s.cstreams[cs.id] == cs {
		delete(s.cstreams, cs.id)
		s.committed -= cs.commit
		<-s.cslots
	}
	s.strMu.Unlock()
}

// endStreams ends every stream once the session has ended: the caller's
// streams get err as their last Response, and the state of both sides'
// streams is dropped (after cancelServing cancelled the served ones), so
// that Stats reports no open streams on a dead session. Stream slots no
// longer matter.
func (s *Session) endStreams(err error) {
	s.strMu.Lock()
	css := make([]*cstream, 0, len(s.cstreams))
	for _, cs := range s.cstreams {
		css = append(css, cs)
	}
	clear(s.cstreams)
	clear(s.sstreams)
	s.committed = 0
	s.strMu.Unlock()
	for _, cs := range css {
		cs.mu.Lock()
		switch {
		case !cs.final:
			cs.finishLocked(err, true, true)
		case cs.pending && !cs.fwd:
			cs.startForwarderLocked(true)
		}
		cs.mu.Unlock()
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
	var small [8]byte
	p, err := readSmall(br, h.Length, small[:])
	if err != nil {
		return err
	}
	cs := s.lookupC(h.ID)
	if cs == nil {
		return fmt.Errorf("%w: accept for unknown stream %d", ErrProtocol, h.ID)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.resp != nil || cs.openErr != nil {
		return fmt.Errorf("%w: second accept for stream %d", ErrProtocol, h.ID)
	}
	if h.Flags&FlagError != 0 {
		cs.openErr = remoteError(cs.h, p)
		cs.ended = true
		s.dropCStream(cs)
		cs.sig <- struct{}{}
		return nil
	}
	if len(p) != 8 {
		return fmt.Errorf("%w: stream accept of %d bytes", ErrProtocol, len(p))
	}
	in, out := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
	if in > handlers.MaxStreamCapacity || out == 0 || out > handlers.MaxStreamCapacity {
		return fmt.Errorf("%w: stream %d capacities %d/%d", ErrProtocol, h.ID, in, out)
	}
	cs.inCap, cs.inCredit = int(in), int(in)
	cs.out.window = int(out)
	cs.resp = make(chan Response, directCap(cs.out.window))
	cs.sig <- struct{}{}
	if cs.final {
		// The caller gave up, or the session ended, while the accept
		// was on its way. In the second case endStreams has run and
		// will not again, so the forwarder that delivers the final
		// must start even though the session is closing (the reader
		// runs, so Close has not begun to wait for goroutines).
		cs.finishLocked(cs.finalErr, true, true)
	}
	return nil
}

// readSmall reads a payload of at most len(buf) bytes into buf (through
// Peek, so that buf, passed to no io.Reader, can stay on the caller's
// stack), and a larger one into a new slice.
func readSmall(br *bufio.Reader, n uint32, buf []byte) ([]byte, error) {
	if int(n) > len(buf) || int(n) > br.Size() {
		return readPayload(br, n)
	}
	b, err := br.Peek(int(n))
	if err != nil {
		return nil, readError(err)
	}
	p := buf[:copy(buf, b)]
	_, _ = br.Discard(int(n))
	return p, nil
}

func (s *Session) handleStreamOut(br *bufio.Reader, h Header) error {
	p, err := readMsg(br, h.Length)
	if err != nil {
		return err
	}
	cs := s.lookupC(h.ID)
	if cs == nil {
		return fmt.Errorf("%w: message for unknown stream %d", ErrProtocol, h.ID)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.resp == nil {
		return fmt.Errorf("%w: message for stream %d before its accept", ErrProtocol, h.ID)
	}
	msg, complete, err := s.gather(&cs.partial, &cs.chunk, h, p)
	if err != nil || !complete || cs.final {
		return err
	}
	if cs.out.full() {
		return fmt.Errorf("%w: stream %d sent beyond its credit", ErrProtocol, h.ID)
	}
	cs.out.received++
	cs.deliverLocked(msg)
	if g := cs.out.grantable(len(cs.resp)); g > 0 {
		s.grant(OpStreamCreditOut, cs.id, g)
	}
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
		*partial = append(grow(*partial, len(p), s.cfg.MaxMessageSize), p...)
		Recycle(p)
		*chunk++
		return nil, false, nil
	}
	if *partial != nil {
		whole := append(grow(*partial, len(p), s.cfg.MaxMessageSize), p...)
		Recycle(p)
		p, *partial = whole, nil
	}
	*chunk = 0
	return p, true, nil
}

func (s *Session) handleStreamEnd(br *bufio.Reader, h Header) error {
	var small [64]byte
	p, err := readSmall(br, h.Length, small[:])
	if err != nil {
		return err
	}
	cs := s.lookupC(h.ID)
	if cs == nil {
		return fmt.Errorf("%w: end of unknown stream %d", ErrProtocol, h.ID)
	}
	var endErr error
	if h.Flags&FlagError != 0 {
		re := remoteError(cs.h, p)
		endErr = re
		if re.code == codeCanceled {
			endErr = context.Canceled
		}
	}
	cs.mu.Lock()
	if cs.resp == nil {
		cs.mu.Unlock()
		return fmt.Errorf("%w: end of stream %d before its accept", ErrProtocol, h.ID)
	}
	cs.ended = true
	// Dropped first, so that a caller who sees Responses closed sees the
	// slot free too.
	s.dropCStream(cs)
	if !cs.final {
		cs.finishLocked(endErr, false, false)
	}
	cs.mu.Unlock()
	return nil
}

func (s *Session) handleCredit(h Header, p []byte) error {
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
		defer cs.mu.Unlock()
		cs.inCredit += n
		if cs.inCredit > cs.inCap || n < 0 {
			return fmt.Errorf("%w: stream %d credit beyond capacity %d", ErrProtocol, h.ID, cs.inCap)
		}
		if cs.parked {
			cs.releaseTokenLocked()
		}
		return nil
	}
	ss := s.lookupS(h.ID)
	if ss == nil {
		return nil // the stream ended as the credit crossed
	}
	ss.mu.Lock()
	ss.credit += n
	bad := ss.credit > ss.outCap || n < 0
	ss.mu.Unlock()
	if bad {
		return fmt.Errorf("%w: stream %d credit beyond capacity %d", ErrProtocol, h.ID, ss.outCap)
	}
	if ss.sendWake != nil {
		signal(ss.sendWake) // a direct stream's Send; not its Recv
	} else {
		signal(ss.notify) // the pump
	}
	return nil
}
