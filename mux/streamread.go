package mux

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/gridmesh/gridmesh/handlers"
)

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
	cs := s.lookupC(h.ID)
	if cs == nil {
		return fmt.Errorf("%w: message for unknown stream %d", ErrProtocol, h.ID)
	}
	// cs.g is the reader's: no lock needed for it.
	if err := cs.g.check(h, s.cfg.MaxMessageSize, "stream message"); err != nil {
		return err
	}
	cs.mu.Lock()
	err := cs.checkOutLocked(h)
	drop := cs.final
	if err == nil && !drop && h.Flags&FlagMore != 0 {
		err = s.countChunk(&cs.out.bytes)
	}
	cs.mu.Unlock()
	if err != nil {
		return err
	}
	if drop {
		return cs.g.discard(br, h) // the caller gave up: nobody takes it
	}
	if h.Flags&FlagMore != 0 {
		seg, err := readSeg(br)
		if err != nil {
			return err
		}
		cs.g.push(seg, s)
		return nil
	}
	var msg []byte
	if h.Seq == 0 {
		msg, err = readMsg(br, h.Length)
	} else {
		msg, err = cs.g.finish(br, h, getMsg)
	}
	if err != nil {
		return err
	}
	s.noteMsg(cs.h, false, true)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if err := cs.checkOutLocked(h); err != nil {
		Recycle(msg)
		return err
	}
	if cs.final {
		Recycle(msg) // the caller gave up, or the stream is over: nobody takes it
		return nil
	}
	cs.out.received++
	if err := s.countMsg(&cs.out.bytes, len(msg)); err != nil {
		Recycle(msg)
		return err
	}
	cs.deliverLocked(msg)
	cs.grantLocked()
	return nil
}

// checkOutLocked checks a handler's message (or chunk of one) on the
// stream against its accept and its credit.
func (cs *cstream) checkOutLocked(h Header) error {
	switch {
	case cs.resp == nil:
		return fmt.Errorf("%w: message for stream %d before its accept", ErrProtocol, h.ID)
	case !cs.final && cs.out.full():
		return fmt.Errorf("%w: stream %d sent beyond its credit", ErrProtocol, h.ID)
	}
	return nil
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
	// Our input no longer counts in the peer's MaxStreamBytes: the peer
	// dropped what it had not taken before it ended the stream. A Send
	// waiting for room sees the end.
	s.clearOut(&cs.inBytes)
	defer s.streamOut.poke()
	// Dropped first, so that a caller who sees Responses closed sees the
	// slot free too.
	s.dropCStream(cs)
	if !cs.final {
		cs.finishLocked(endErr, false, false)
	}
	end := cs.takeEndLocked()
	cs.mu.Unlock()
	s.runOff(end) // the reader runs no hook that may wait
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
		s.grantedOut(&cs.inBytes, n)
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
	if !bad {
		s.grantedOut(&ss.outBytes, n)
	}
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

// refuseStream answers a stream open with an error accept (final).
func (s *Session) refuseStream(id uint64, code byte, msg string) error {
	return s.q.put(context.Background(), nil, Header{Op: OpStreamAccept, Flags: FlagError, ID: id}, appendError(nil, code, msg), control)
}
