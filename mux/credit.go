package mux

import (
	"context"
	"encoding/binary"
	"errors"
)

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

// grant sends n messages of credit for stream id.
func (s *Session) grant(op Op, id uint64, n int) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(n))
	if err := s.q.put(context.Background(), s.closing, Header{Op: op, ID: id}, p[:], control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err)
	}
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
