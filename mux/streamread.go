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
	if err != nil || !complete {
		return err
	}
	if cs.final {
		Recycle(msg) // the caller gave up, or the stream is over: nobody takes it
		return nil
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

// refuseStream answers a stream open with an error accept (final).
func (s *Session) refuseStream(id uint64, code byte, msg string) error {
	return s.q.put(context.Background(), nil, Header{Op: OpStreamAccept, Flags: FlagError, ID: id}, appendError(nil, code, msg), control)
}
