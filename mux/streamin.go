package mux

import (
	"bufio"
	"context"
	"fmt"
)

func (s *Session) handleStreamIn(br *bufio.Reader, h Header) error {
	ss := s.lookupS(h.ID)
	if ss == nil {
		return skip(br, h.Length) // the stream ended as the message crossed
	}
	if ss.inCr.window == 0 {
		return fmt.Errorf("%w: input for stream %d, which takes none", ErrProtocol, h.ID)
	}
	// ss.g is the reader's: no lock needed for it.
	if err := ss.g.check(h, s.cfg.MaxMessageSize, "stream message"); err != nil {
		return err
	}
	ss.mu.Lock()
	err := ss.checkInLocked(h)
	drop := ss.dropsIn()
	if err == nil && !drop && h.Flags&FlagMore != 0 {
		err = s.countChunk(&ss.inCr.bytes)
	}
	ss.mu.Unlock()
	if err != nil {
		return err
	}
	if drop {
		return ss.g.discard(br, h) // the stream is cancelled or over: nobody takes it
	}
	if h.Flags&FlagMore != 0 {
		seg, err := readSeg(br)
		if err != nil {
			return err
		}
		ss.g.push(seg, s)
		return nil
	}
	var msg []byte
	if h.Seq == 0 {
		msg, err = readMsg(br, h.Length)
	} else {
		msg, err = ss.g.finish(br, h, getMsg)
	}
	if err != nil {
		return err
	}
	s.noteMsg(ss.h, true, true)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if err := ss.checkInLocked(h); err != nil {
		Recycle(msg)
		return err
	}
	if ss.dropsIn() {
		Recycle(msg) // the stream is cancelled or over: nobody takes it
		return nil
	}
	ss.inCr.received++
	if err := s.countMsg(&ss.inCr.bytes, len(msg)); err != nil {
		Recycle(msg)
		return err
	}
	if ss.over.len() == 0 {
		// pump sends on in only while over is not empty.
		select {
		case ss.in <- msg: // room, or the handler waiting
			ss.inCr.pushed++
			s.grantInLocked(ss)
			return nil
		default:
		}
	}
	ss.over.push(msg)
	signal(ss.notify) // for the pump, or a direct stream's Recv; not its Send
	s.grantInLocked(ss)
	return nil
}

// dropsIn reports whether the caller's input is dropped: the stream was
// cancelled, or its handler's input shut without the caller closing it.
func (ss *sstream) dropsIn() bool {
	return ss.cancelled || ss.inShut && !ss.inClosed
}

// checkInLocked checks a caller's message (or chunk of one) against the
// stream's input state and credit.
func (ss *sstream) checkInLocked(h Header) error {
	switch {
	case ss.dropsIn():
		return nil
	case ss.inClosed:
		return fmt.Errorf("%w: input for stream %d after its end", ErrProtocol, h.ID)
	case ss.inCr.full():
		return fmt.Errorf("%w: stream %d input beyond its credit", ErrProtocol, h.ID)
	}
	return nil
}

func (s *Session) handleCloseIn(id uint64) {
	ss := s.lookupS(id)
	if ss == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.inClosed = true
	if ss.over.len() > 0 || ss.in == nil || ss.inShut || ss.cancelled {
		ss.wake() // pump closes in once it has moved the rest
		return
	}
	// Nothing waits: close in now (pump sends on in only from over).
	ss.inShut = true
	close(ss.in)
}

// cancelStream cancels a served stream at the caller's request. The
// caller dropped what it had not taken, so the stream's messages no longer
// count in its MaxStreamBytes; the caller's input is dropped here too.
func (s *Session) cancelStream(id uint64, deadline bool) {
	ss := s.lookupS(id)
	if ss == nil {
		return
	}
	ss.g.forget() // the reader's: the rest of a message arriving is skipped
	ss.mu.Lock()
	ss.cancelled, ss.byDeadline = true, deadline
	s.dropIn(&ss.inCr.bytes)
	s.clearOut(&ss.outBytes)
	if !ss.direct && ss.over.len() > 0 {
		// The pump may be handing the first one to the handler right
		// now (it peeks, and pops once the handler took it): it is not
		// ours to recycle.
		ss.over.pop()
	}
	n := dropMsgs(&ss.over)
	ss.mu.Unlock()
	if dropHook != nil && n > 0 {
		dropHook(n)
	}
	if deadline {
		ss.rc.cancel(context.DeadlineExceeded)
	} else {
		ss.rc.cancel(context.Canceled)
	}
	ss.wake()
	s.streamOut.poke()
}
