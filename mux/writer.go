package mux

import (
	"context"
	"fmt"
	"sync"
)

// writeQueue is where every goroutine of a session puts its frames. Frames
// are encoded straight into buf under mu; the single writer goroutine swaps
// buf for an empty one and writes the whole batch with one Write call, so
// many small frames queued while a write was in progress leave together.
type writeQueue struct {
	mu      sync.Mutex
	buf     []byte // frames waiting for the writer
	closed  bool
	space   chan struct{} // closed when the writer takes buf; senders over the bound wait on it
	waiters bool          // someone waits on space
	wake    chan struct{} // cap 1: buf went from empty to non-empty
	limit   int           // bound for ordinary senders
	hard    int           // bound for control frames (a peer that floods us while not reading)
}

func newWriteQueue(limit int) *writeQueue {
	return &writeQueue{
		wake:  make(chan struct{}, 1),
		space: make(chan struct{}),
		limit: limit,
		hard:  4*limit + 1<<20,
	}
}

// errQueueOverflow: control frames piled up past the hard bound, which
// happens only when the peer sends to us and does not read.
var errQueueOverflow = fmt.Errorf("%w: peer does not read (send queue overflow)", ErrProtocol)

// Frame classes for put.
type class uint8

const (
	normal  class = iota // waits while the queue holds limit bytes or more
	bulk                 // a chunk of a large message: waits at limit/4
	control              // never waits (bounded by hard instead)
)

// put appends one frame. done is the session's closing channel.
//
// Chunks of large messages wait while the queue holds a quarter of its
// bound, small messages only when it is full: a small request always finds
// room ahead of at most limit/4 bytes of bulk data, so a 16 MiB transfer
// delays it by a few chunk times, not by the whole queue.
func (q *writeQueue) put(ctx context.Context, done <-chan struct{}, h Header, payload []byte, c class) error {
	limit := q.limit
	if c == bulk {
		limit = q.limit / 4
	}
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrDisconnected
		}
		if c == control || len(q.buf) < limit {
			if c == control && len(q.buf) > q.hard {
				q.mu.Unlock()
				return errQueueOverflow
			}
			empty := len(q.buf) == 0
			q.buf = AppendFrame(q.buf, h, payload)
			q.mu.Unlock()
			if empty {
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
			return nil
		}
		space := q.space
		q.waiters = true
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrDisconnected
		}
	}
}

// putSmall is put for a frame of the normal class whose payload fits one
// frame, in a stack frame small enough that a stream's pump goroutine
// sending a message stays within its first 2 KiB stack (a stack that grew
// once stays grown while its goroutine idles: 2 KiB per idle stream). It
// falls back to put when it would have to wait or grow the buffer.
func (q *writeQueue) putSmall(done <-chan struct{}, h *Header, payload []byte) error {
	q.mu.Lock()
	n := len(q.buf)
	if q.closed || n >= q.limit || cap(q.buf)-n < HeaderSize+len(payload) {
		q.mu.Unlock()
		return q.putSlow(done, h, payload)
	}
	q.buf = q.buf[:n+HeaderSize+len(payload)]
	h.Length = uint32(len(payload))
	h.put((*[HeaderSize]byte)(q.buf[n:]))
	copy(q.buf[n+HeaderSize:], payload)
	q.mu.Unlock()
	if n == 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

//go:noinline
func (q *writeQueue) putSlow(done <-chan struct{}, h *Header, payload []byte) error {
	return q.put(context.Background(), done, *h, payload, normal)
}

// take hands the queued frames to the writer and gives it spare to fill
// next; it wakes senders waiting for space.
func (q *writeQueue) take(spare []byte) []byte {
	q.mu.Lock()
	out := q.buf
	q.buf = spare[:0]
	if q.waiters {
		close(q.space)
		q.space = make(chan struct{})
		q.waiters = false
	}
	q.mu.Unlock()
	return out
}

// close refuses further frames and returns what is still queued.
func (q *writeQueue) close() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	out := q.buf
	q.buf = nil
	return out
}

func (q *writeQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}
