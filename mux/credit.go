package mux

import (
	"context"
	"encoding/binary"
	"errors"
)

// credit is one direction's flow-control account, kept by the receiver:
// the sender may have window messages that were not granted back, and
// their bytes are counted in bytes (see streambytes.go).
type credit struct {
	window   int    // the capacity
	received uint64 // messages received
	granted  uint64 // messages granted back
	pushed   uint64 // messages put into the consumer's channel
	bytes    recvBytes
}

// grantable returns how much credit to grant now, given the consumer's
// channel length: what was taken and not granted, once that is half the
// window or half the stream reserve in bytes, or at once if the sender
// has no credit left. The bytes of what it grants no longer count.
//
// What was taken and not granted counts on both sides until granted, but
// it is less than half the reserve, and it counts against MaxStreamBytes
// only while the stream holds more than half the reserve of messages not
// yet taken (its consumer lags): so the room a stream holds in
// MaxStreamBytes is held by messages still waiting for its consumer,
// never by ones it took, and a handler's end, which waits until the
// stream owes no more than the reserve, waits only for the consumer to
// take what it has not.
func (s *Session) grantable(c *credit, inChan int) int {
	if uint64(inChan) > c.pushed {
		return 0
	}
	taken := c.pushed - uint64(inChan)
	g := int(taken - c.granted)
	if g <= 0 {
		return 0
	}
	if g >= max(1, c.window/2) || c.received-c.granted >= uint64(c.window) || c.bytes.charges.sum(g) >= s.reserveIn/2 {
		c.granted += uint64(g)
		s.grantedIn(&c.bytes, g)
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
	cs.grantLocked()
	cs.mu.Unlock()
}

// grantLocked grants the handler the credit its caller freed, unless the
// stream's last Response is decided, and has the observer look at the
// stream if it must.
func (cs *cstream) grantLocked() {
	if cs.final {
		return
	}
	if g := cs.s.grantable(&cs.out, len(cs.resp)); g > 0 {
		cs.s.grant(OpStreamCreditOut, cs.id, g)
	}
	cs.s.watchC(cs)
}

// grant sends n messages of credit for stream id.
func (s *Session) grant(op Op, id uint64, n int) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(n))
	if err := s.q.put(context.Background(), s.closing, Header{Op: op, ID: id}, p[:], control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err)
	}
}
