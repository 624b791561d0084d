package mux

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gridmesh/gridmesh/handlers"
)

// cstream is the caller's side of a stream. It has no goroutine of its
// own: the reader delivers the handler's messages into resp, Send puts the
// caller's straight on the writer's queue, and a goroutine runs only while
// messages overflow resp (and, for NewStream, to forward Requests).
type cstream struct {
	s   *Session
	id  uint64
	sig chan struct{} // cap 1: the accept arrived; then the send token

	// Set by the reader before it signals the accept.
	inCap   int
	resp    chan Response
	openErr error

	g        chunks // a message of the handler's still arriving; the reader's
	reserved int64  // of the peer's MaxRequestBytes, for the payload, until the end

	mu       sync.Mutex
	out      credit
	over     msgQueue[[]byte] // messages waiting for room in resp
	inCredit int              // messages we may still send
	inBytes  owedBytes        // what our messages owe the peer's MaxStreamBytes
	finalErr error            // the last Response (nil: Responses just closes)
	lostErr  error            // the final, if Responses closed without it (putFinalLocked)
	kick     chan struct{}    // cap 1: wakes the forwarder to drop; made with the first forwarder
	done     chan struct{}    // closed with Responses; made on demand
	stop     func() bool      // stops the AfterFunc watching ctx; called when Responses closes
	end      func(error)      // Stream.OnEnd's, run once Responses closed (hooks.go)
	endQuick func(error)      // Stream.OnEndQuick's, run as Responses closes
	// The handler (set at the open) and the flags sit together, so that
	// their padding does not push the stream into a larger allocation
	// class.
	h         handlers.HandlerID
	opened    bool // NewStream returned the stream
	fwd       bool // a goroutine is moving over into resp
	watched   bool // in the session's observer (streambytes.go)
	parked    bool // the send token waits for credit
	inClosed  bool // our input ended
	ended     bool // OpStreamEnd (or a refusal) arrived
	final     bool // the last Response is decided (or nobody reads them): finalErr
	pending   bool // the final is still to be delivered by the forwarder
	dropping  bool // messages not taken are dropped, and what arrives (dropLocked)
	cancelled bool // the caller gave up (abort): nothing waits for it to read
	delivered bool // Responses is closed
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
// puts its message (all its chunks) on the queue. It first counts the
// message's bytes, waiting for room in the peer's MaxStreamBytes if the
// stream owes more than its reserve.
func (cs *cstream) sendHeld(ctx context.Context, msg []byte) error {
	s := cs.s
	err := s.reserveOut(ctx, &cs.mu, &cs.inBytes, len(msg), func() error {
		if cs.final || cs.inClosed {
			return ErrStreamEnded
		}
		return nil
	})
	cs.mu.Lock()
	if err != nil {
		cs.releaseTokenLocked()
		cs.mu.Unlock()
		return s.sendError(err)
	}
	cs.inCredit-- // the token is held while there is credit
	cs.mu.Unlock()
	sent, err := s.send(ctx, Header{Op: OpStreamIn, ID: cs.id}, msg)
	cs.mu.Lock()
	if !sent {
		cs.inCredit++
		s.unreserveOut(&cs.inBytes)
	}
	cs.releaseTokenLocked()
	cs.mu.Unlock()
	if err != nil {
		if sent {
			cs.abort(s.sendError(err)) // half a message went out
		}
		return s.sendError(err)
	}
	s.noteMsg(cs.h, false, false)
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
// the session is gone; on a deadline too, which the peer sees as well, so
// that it lets go of the bytes the stream owes at once), the messages not
// yet taken are dropped and recycled, and err is the last
// Response. Responses closes at once, whether or not the caller reads it:
// nothing waits for the caller any more (see putFinalLocked). The state
// stays until the peer's OpStreamEnd, so slot accounting stays exact.
//
// A stream whose end was already decided (the handler returned, or the
// session ended) but whose caller has not taken everything drops what is
// left the same way and keeps its final.
func (cs *cstream) abort(err error) {
	s := cs.s
	cs.mu.Lock()
	if cs.delivered || cs.cancelled {
		cs.mu.Unlock()
		return
	}
	cs.cancelled = true
	if cs.final {
		if cs.resp != nil {
			cs.dropLocked()
			cs.settleLocked(false)
		}
		end := cs.takeEndLocked()
		cs.mu.Unlock()
		end.run()
		return
	}
	ended := cs.ended
	cs.finishLocked(err, true, false)
	end := cs.takeEndLocked()
	cs.mu.Unlock()
	end.run()          // the caller's goroutine, or the stream's
	s.streamOut.poke() // a Send waiting for room sees the stream ended
	switch {
	case ended:
		s.dropCStream(cs)
	case errors.Is(err, ErrDisconnected):
	case err == context.DeadlineExceeded:
		s.cancelFrame(cs.id, []byte{cancelDeadline})
	default:
		s.control(Header{Op: OpCancel, ID: cs.id})
	}
}

// cancelFrame queues an OpCancel with a payload.
func (s *Session) cancelFrame(id uint64, p []byte) {
	if err := s.q.put(context.Background(), s.closing, Header{Op: OpCancel, ID: id}, p, control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err)
	}
}

// dropCStream forgets a stream that ended (or was refused): its slot is
// free, and its payload no longer counts in the peer's MaxRequestBytes.
func (s *Session) dropCStream(cs *cstream) {
	s.strMu.Lock()
	if s.cstreams[cs.id] == cs {
		delete(s.cstreams, cs.id)
		s.reqOut.release(cs.reserved)
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
	s.strMu.Unlock()
	s.streamOut.poke()
	for _, cs := range css {
		cs.mu.Lock()
		switch {
		case !cs.final:
			cs.finishLocked(err, true, true)
		case cs.pending && !cs.fwd:
			cs.startForwarderLocked(true)
		}
		end := cs.takeEndLocked()
		cs.mu.Unlock()
		s.runOff(end)
	}
}

// control queues a control frame; failing to means the session is over.
func (s *Session) control(h Header) {
	if err := s.q.put(context.Background(), s.closing, h, nil, control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err)
	}
}
