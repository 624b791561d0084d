package mux

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Acknowledgements (OpAck, version 2). The reader tells the peer how many
// bytes of the session it has read, each time it has read ackBytes more,
// but at most once per ackInterval. A peer whose pong is late behind
// megabytes of data it is still reading thus keeps proving, with frames of
// its own, that it is alive and reading; a stopped peer, whose kernel
// keeps accepting bytes, proves nothing (Stats.PeerRead stands still).
const (
	ackBytes    = 16 << 10
	ackInterval = 50 * time.Millisecond
	ackSize     = 8 // payload: the total bytes read, big-endian
)

// ackRead is the pipeReader's hook, offered the bytes read so far each
// time ackBytes more were read: it sends an OpAck for them unless the
// session speaks version 1 or the last acknowledgement left less than
// ackInterval ago. It runs on the reader goroutine, which owns version
// (before ready closes) and ackedAt.
func (s *Session) ackRead(total uint64) {
	if s.version < 2 {
		return
	}
	now := time.Now()
	if now.Sub(s.ackedAt) < ackInterval {
		return
	}
	s.ackedAt = now
	var p [ackSize]byte
	binary.BigEndian.PutUint64(p[:], total)
	if err := s.q.put(context.Background(), nil, Header{Op: OpAck}, p[:], control); err != nil && !errors.Is(err, ErrDisconnected) {
		s.fail(err) // the peer does not read: the queue overflowed
	}
}

// handleAck records the peer's acknowledgement. It must carry 8 bytes,
// never go back, and never exceed what this side has written: everything
// counted in BytesOut, plus at most the one Write still under way.
func (s *Session) handleAck(br *bufio.Reader, h Header) error {
	if s.version < 2 {
		return fmt.Errorf("%w: ack frame in a version %d session", ErrProtocol, s.version)
	}
	if h.Length != ackSize {
		return fmt.Errorf("%w: ack of %d bytes", ErrProtocol, h.Length)
	}
	var small [ackSize]byte
	p, err := readSmall(br, h.Length, small[:])
	if err != nil {
		return err
	}
	n := binary.BigEndian.Uint64(p)
	prev := s.stats.peerRead.Load() // only the reader stores it
	switch {
	case n < prev:
		return fmt.Errorf("%w: ack of %d bytes after one of %d", ErrProtocol, n, prev)
	case n > s.stats.bytesOut.Load()+MaxWriteSize:
		return fmt.Errorf("%w: ack of %d bytes, more than were sent", ErrProtocol, n)
	}
	s.stats.peerRead.Store(n)
	return nil
}
