package mux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// readState is the read side of a session. It belongs to the goroutine that
// reads, which changes only when the watchdog hands the reading over.
type readState struct {
	pr         *pipeReader
	br         *bufio.Reader // pr's current buffer
	helloTimer *time.Timer   // stopped when the reading ends
}

// readLoop owns the read side of conn. The reading never waits on user
// code or on a full queue: handlers run on their own goroutines, answers
// are delivered to buffered channels, and the frames the reader sends are
// control frames. The exception is a handler registered inline, which
// runs here, queueing its answer as any handler does; if it takes longer
// than Config.InlineBudget, the reading moves to a new goroutine, and
// this one finishes the handler as a worker (inline.go).
func (s *Session) readLoop(rd *readState) {
	if s.read(rd) == errHandedOver {
		// This goroutine ran an inline handler past its budget, and a new
		// one reads now; it was counted as a worker when it was replaced.
		s.handlers.Done()
		return
	}
	rd.pr.release()
	rd.helloTimer.Stop()
	close(s.readerDone)
}

// read reads and handles frames until the session ends, or until an inline
// handler overran its budget and the reading was handed to another
// goroutine (errHandedOver).
func (s *Session) read(rd *readState) error {
	var hdr [HeaderSize]byte
	for {
		rd.br = rd.pr.buffer(rd.br)
		if _, err := io.ReadFull(rd.br, hdr[:]); err != nil {
			s.fail(readError(err))
			return nil
		}
		select {
		case <-s.closing:
			return nil // the session ended while this frame was on its way
		default:
		}
		h, err := ParseHeader(hdr[:])
		if err == nil {
			err = s.handleFrame(rd.br, h)
		}
		if err != nil && err != errHandedOver {
			s.fail(err)
			return nil
		}
		s.stats.framesIn.Add(1)
		if err != nil {
			return err
		}
	}
}

func readError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated frame: %w", ErrDisconnected, err)
	}
	return fmt.Errorf("%w: read: %w", ErrDisconnected, err)
}

// handleFrame acts on one frame whose payload is still unread in br.
func (s *Session) handleFrame(br *bufio.Reader, h Header) error {
	if !s.gotHello && h.Op != OpHello {
		return fmt.Errorf("%w: %v frame before hello", ErrProtocol, h.Op)
	}
	if s.inTrace.pending {
		if err := s.traceFollows(h); err != nil {
			return err
		}
	}
	switch h.Op {
	case OpHello:
		return s.handleHello(br, h)
	case OpRequest, OpStreamOpen:
		return s.handleRequest(br, h)
	case OpStreamAccept:
		return s.handleStreamAccept(br, h)
	case OpStreamIn:
		return s.handleStreamIn(br, h)
	case OpStreamOut:
		return s.handleStreamOut(br, h)
	case OpStreamCreditIn, OpStreamCreditOut:
		var small [4]byte
		p, err := readSmall(br, h.Length, small[:])
		if err != nil {
			return err
		}
		return s.handleCredit(h, p)
	case OpStreamCloseIn:
		s.handleCloseIn(h.ID)
		return skip(br, h.Length)
	case OpStreamEnd:
		return s.handleStreamEnd(br, h)
	case OpResponse:
		return s.handleResponse(br, h)
	case OpCancel:
		deadline, err := readCancel(br, h.Length)
		if err != nil {
			return err
		}
		s.handleCancel(h.ID, deadline)
		return nil
	case OpPing:
		if err := skip(br, h.Length); err != nil {
			return err
		}
		return s.q.put(context.Background(), nil, Header{Op: OpPong, ID: h.ID}, nil, control)
	case OpPong:
		s.handlePong(h.ID)
		return skip(br, h.Length)
	case OpAck:
		return s.handleAck(br, h)
	case OpTrace:
		return s.handleTrace(br, h)
	case OpClose:
		reason, err := readPayload(br, h.Length)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: peer closed: %s", ErrDisconnected, reason)
	}
	return fmt.Errorf("%w: unhandled op %v", ErrProtocol, h.Op)
}
