package mux

import (
	"bufio"
	"io"
	"sync"
	"sync/atomic"
)

// Request payloads in one frame are read into pooled buffers, returned to
// the pool once the handler returned and its answer was queued; the chunks
// of messages that come in chunks are gathered in buffers of the
// MaxFramePayload class (chunks.go). Size classes keep a small request from
// pinning a large buffer.
var bufClasses = [...]int{512, 2 << 10, 8 << 10, 32 << 10, MaxFramePayload}

var bufPools [len(bufClasses)]sync.Pool

func getBuf(n int) *[]byte {
	for i, size := range bufClasses {
		if n <= size {
			if pb, ok := bufPools[i].Get().(*[]byte); ok {
				*pb = (*pb)[:n]
				return pb
			}
			b := make([]byte, n, size)
			return &b
		}
	}
	b := make([]byte, n) // larger than any class: not pooled
	return &b
}

func putBuf(pb *[]byte) {
	if pb == nil {
		return
	}
	for i, size := range bufClasses {
		if cap(*pb) == size {
			bufPools[i].Put(pb)
			return
		}
	}
}

// Read buffers. The reader reads the pipe through a small buffer of its own
// while reads are small, and borrows a large pooled one while they fill the
// small one, so an idle session holds only the small buffer and a busy one
// reads many frames per system call.
const (
	smallReadBuffer = 4 << 10
	largeReadBuffer = 64 << 10
)

var largeReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, largeReadBuffer) }}

// pipeReader is the reader goroutine's view of the pipe: it counts the
// bytes read, offers to acknowledge them, and picks the buffer to read
// through.
type pipeReader struct {
	r     io.Reader
	n     *atomic.Uint64 // bytes read in all
	read  int            // bytes read since buffer last looked
	offer uint64         // n when ack was last offered it
	// ack is offered the total read each time ackBytes more were read;
	// it decides whether to acknowledge it.
	ack   func(total uint64)
	stamp *int64        // if set, given the time (monoNow) of every read that returned bytes
	small *bufio.Reader // owned
	large *bufio.Reader // borrowed from largeReaders; nil when not in use
}

func newPipeReader(r io.Reader, n *atomic.Uint64, ack func(uint64)) *pipeReader {
	p := &pipeReader{r: r, n: n, ack: ack}
	p.small = bufio.NewReaderSize(p, smallReadBuffer)
	return p
}

// Read reads from the pipe. Acknowledging here rather than between frames
// keeps acknowledgements flowing while one large frame trickles in.
func (p *pipeReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if p.stamp != nil && n > 0 {
		*p.stamp = monoNow()
	}
	p.read += n
	total := p.n.Add(uint64(n))
	if total-p.offer >= ackBytes && p.ack != nil {
		p.offer = total
		p.ack(total)
	}
	return n, err
}

// buffer returns the reader to read the next frame through; br is the
// current one. It switches only when br holds no unread byte, so that the
// switch loses nothing, which is when the reader has caught up with the
// peer's writes: to the large buffer when the bytes read since the last
// catch-up would have filled the small one, back to the small one when they
// were less than half of it.
func (p *pipeReader) buffer(br *bufio.Reader) *bufio.Reader {
	if br.Buffered() > 0 {
		return br
	}
	read := p.read
	p.read = 0
	switch {
	case br == p.small && read >= smallReadBuffer:
		p.large = largeReaders.Get().(*bufio.Reader)
		p.large.Reset(p)
		return p.large
	case br == p.large && read < smallReadBuffer/2:
		p.release()
		return p.small
	}
	return br
}

// release returns the large buffer, if borrowed, to the pool.
func (p *pipeReader) release() {
	if p.large != nil {
		p.large.Reset(nil)
		largeReaders.Put(p.large)
		p.large = nil
	}
}
