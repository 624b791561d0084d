package mux

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
// reused, so a steady stream allocates nothing.
type msgQueue[T any] struct {
	buf  []T
	head int
}

func (q *msgQueue[T]) len() int { return len(q.buf) - q.head }

// push adds v. A full buffer whose front was popped is compacted rather
// than grown, so that a queue that never empties (a steady flow) does not
// grow with everything that went through it: its storage stays within
// twice the most values it held at once.
func (q *msgQueue[T]) push(v T) {
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, v)
}

func (q *msgQueue[T]) pop() T {
	var zero T
	v := q.buf[q.head]
	q.buf[q.head] = zero
	q.head++
	if q.head == len(q.buf) {
		q.emptied()
	}
	return v
}

// unpush removes the value pushed last.
func (q *msgQueue[T]) unpush() T {
	var zero T
	n := len(q.buf) - 1
	v := q.buf[n]
	q.buf[n] = zero
	q.buf = q.buf[:n]
	if q.head == n {
		q.emptied()
	}
	return v
}

// emptied readies an empty queue for reuse: its storage is kept, unless a
// burst grew it beyond keptCap (then it goes to the garbage collector, so
// that a stream that once queued many messages does not keep their slots).
func (q *msgQueue[T]) emptied() {
	if cap(q.buf) > keptCap {
		q.buf = nil
	} else {
		q.buf = q.buf[:0]
	}
	q.head = 0
}

// keptCap is the most slots an empty queue keeps: a busy stream's window
// of 128 messages (whose queue, compacted rather than grown, holds at most
// twice that) reuses its storage; a larger burst's is let go.
const keptCap = 256

func (q *msgQueue[T]) clear() {
	clear(q.buf)
	q.buf, q.head = nil, 0
}

// dropMsgs empties q, recycling its messages, and reports how many there
// were.
func dropMsgs(q *msgQueue[[]byte]) int {
	n := q.len()
	for q.len() > 0 {
		Recycle(q.pop())
	}
	q.clear()
	return n
}
