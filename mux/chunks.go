package mux

import (
	"bufio"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Messages larger than MaxFramePayload arrive in chunks. Every chunk but
// the last carries exactly MaxFramePayload bytes (SPEC.md), and is read
// straight into a pooled segment of that size; the last completes the
// message, which is copied once into a buffer of its size class (getMsg:
// at most a sixteenth larger). So a message being gathered holds exactly
// the bytes that have arrived, and a whole one hardly more than its size:
// gathering never doubles a buffer, as growing one would.

// chunks is a message being gathered. Its segments belong to the reader
// goroutine; the reaper reads only last.
type chunks struct {
	segs    []*[]byte    // the chunks so far, MaxFramePayload bytes each
	skipped int          // bytes of chunks discarded (see discard)
	seq     uint32       // next chunk expected
	last    atomic.Int64 // UnixNano of the last chunk; 0: not gathering
}

// size returns the bytes that arrived so far.
func (g *chunks) size() int { return len(g.segs)*MaxFramePayload + g.skipped }

// check checks chunk h against what the message expects: its sequence
// number and the total against limit (ParseHeader checked the size of a
// chunk that is not the last). what names the message for the error
// ("request", …).
func (g *chunks) check(h Header, limit int, what string) error {
	switch {
	case h.Seq != g.seq:
		return fmt.Errorf("%w: %s %d chunk %d, expected %d", ErrProtocol, what, h.ID, h.Seq, g.seq)
	case g.size()+int(h.Length) > limit:
		return fmt.Errorf("%w: %s %d exceeds %d bytes", ErrProtocol, what, h.ID, limit)
	}
	return nil
}

// readSeg reads the payload of a chunk that is not the last (exactly
// MaxFramePayload bytes, checked by ParseHeader) into a new segment.
func readSeg(br *bufio.Reader) (*[]byte, error) {
	seg := getBuf(MaxFramePayload)
	if err := readFull(br, *seg); err != nil {
		putBuf(seg)
		return nil, err
	}
	return seg, nil
}

// push adds a segment read by readSeg and records the time for the
// reaper, which it arms with the message's first chunk.
func (g *chunks) push(seg *[]byte, s *Session) {
	g.segs = append(g.segs, seg)
	g.seq++
	g.last.Store(time.Now().UnixNano())
	if g.seq == 1 && s != nil {
		s.armReaper()
	}
}

// finish completes the message with its last chunk h (payload unread in
// br): the whole message is returned in a buffer from alloc (of its exact
// length), and the segments go back to the pool.
func (g *chunks) finish(br *bufio.Reader, h Header, alloc func(n int) []byte) ([]byte, error) {
	return assemble(g.take(), br, h, alloc)
}

// take detaches the segments, readying g for a new message.
func (g *chunks) take() []*[]byte {
	segs := g.segs
	g.segs, g.seq, g.skipped = nil, 0, 0
	g.last.Store(0)
	return segs
}

// assemble copies segs and the last chunk h (payload unread in br) into a
// buffer from alloc, and returns the segments to the pool.
func assemble(segs []*[]byte, br *bufio.Reader, h Header, alloc func(n int) []byte) ([]byte, error) {
	n := len(segs) * MaxFramePayload
	msg := alloc(n + int(h.Length))
	for i, seg := range segs {
		copy(msg[i*MaxFramePayload:], *seg)
		putBuf(seg)
	}
	if err := readFull(br, msg[n:]); err != nil {
		return nil, err
	}
	return msg, nil
}

// reset returns the segments to the pool and readies g for a new message.
func (g *chunks) reset() {
	for i, seg := range g.segs {
		putBuf(seg)
		g.segs[i] = nil
	}
	g.segs = g.segs[:0]
	g.seq, g.skipped = 0, 0
	g.last.Store(0)
}

// discard reads chunk h (checked) of a message nobody will take (its
// stream's messages are dropped) without keeping it: the segments
// gathered so far go back to the pool, and the chunk's payload is
// skipped, so that a dropped stream holds no memory however its peer goes
// on sending. The message's sequence is still followed, but not timed
// (ChunkTimeout): a message that holds nothing may stop midway.
func (g *chunks) discard(br *bufio.Reader, h Header) error {
	if err := skip(br, h.Length); err != nil {
		return err
	}
	if h.Flags&FlagMore == 0 {
		g.reset()
		return nil
	}
	g.forget()
	g.skipped += int(h.Length)
	g.seq++
	return nil
}

// forget lets go of the segments of a message whose stream's messages are
// now dropped, keeping its sequence (its sender may still send the rest,
// which discard skips), and stops timing it.
func (g *chunks) forget() {
	n := g.size()
	for i, seg := range g.segs {
		putBuf(seg)
		g.segs[i] = nil
	}
	g.segs = g.segs[:0]
	g.skipped = n
	g.last.Store(0)
}

// chargeOverhead is what a message counts beyond its length in
// MaxStreamBytes and MaxRequestBytes: its share of the queue slots,
// headers and allocator rounding that hold it.
const chargeOverhead = 128

// charge is what a message of n bytes counts (SPEC.md, Limits).
func charge(n int) int64 { return int64(n) + chargeOverhead }

// streamReserve is the bytes each stream of this side's may hold without
// counting against MaxStreamBytes (SPEC.md, Limits):
// MaxStreamBytes / (2 × MaxStreams), within 4..64 KiB.
func streamReserve(cfg Config) int64 {
	return min(max(cfg.MaxStreamBytes/(2*int64(cfg.MaxStreams)), 4<<10), 64<<10)
}

// tally counts bytes the peer makes this side hold against one of this
// side's bounds (MaxRequestBytes, MaxResponseBytes), announced in the
// hello. A conforming peer never exceeds it: add reports a protocol error
// if this one did.
type tally struct {
	used  atomic.Int64
	limit int64
	name  string
}

func (t *tally) add(n int64) error {
	if t.used.Add(n) > t.limit {
		return fmt.Errorf("%w: the peer made this side hold more than %s (%d bytes)", ErrProtocol, t.name, t.limit)
	}
	return nil
}

func (t *tally) sub(n int64) {
	if n != 0 { // most requests count nothing: spare them the shared line
		t.used.Add(-n)
	}
}

// budget is one of the peer's byte bounds (its MaxRequestBytes or
// MaxResponseBytes), announced in its hello. A sender here reserves a
// message's count before its first frame and releases it once the peer
// has let go of the message (SPEC.md says when), so that the peer's own
// count never exceeds its bound. A limit of 0 (a peer whose hello
// announces none) does not bound.
type budget struct {
	mu    sync.Mutex
	limit int64
	used  int64
	freed chan struct{} // closed when bytes are released; nil while nobody waits
}

// acquire reserves n bytes, waiting for room until ctx ends or done is
// closed (then ErrDisconnected).
func (b *budget) acquire(ctx context.Context, done <-chan struct{}, n int64, name string) error {
	if b.limit == 0 || n == 0 {
		return nil
	}
	if n > b.limit {
		return fmt.Errorf("%w: %d bytes exceed the peer's %s (%d)", ErrMessageTooLarge, n, name, b.limit)
	}
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrDisconnected
		}
	}
}

// release gives back n bytes reserved by acquire.
func (b *budget) release(n int64) {
	if b.limit == 0 || n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.mu.Unlock()
}

// The reaper ends a session on which a message stopped arriving midway:
// it runs every ChunkTimeout/4 while any message is being gathered, and a
// message whose last chunk is older than ChunkTimeout is a protocol error.

// armReaper starts the reaper unless it runs.
func (s *Session) armReaper() {
	if !s.reaping.CompareAndSwap(false, true) {
		return
	}
	s.reapMu.Lock()
	defer s.reapMu.Unlock()
	if s.reaper == nil {
		s.reaper = time.AfterFunc(s.cfg.ChunkTimeout/4, s.reap)
	} else {
		s.reaper.Reset(s.cfg.ChunkTimeout / 4)
	}
}

func (s *Session) reap() {
	select {
	case <-s.closing:
		return
	default:
	}
	stale, any := s.staleChunks()
	if stale != "" {
		s.fail(fmt.Errorf("%w: %s: no chunk for %v (ChunkTimeout)", ErrProtocol, stale, s.cfg.ChunkTimeout))
		return
	}
	if !any {
		// Nothing is being gathered: stop, unless a message started while
		// this scan ran (its push found the reaper armed).
		s.reaping.Store(false)
		if _, any = s.staleChunks(); !any || !s.reaping.CompareAndSwap(false, true) {
			return
		}
	}
	s.reapMu.Lock()
	s.reaper.Reset(s.cfg.ChunkTimeout / 4)
	s.reapMu.Unlock()
}

// staleChunks names a message being gathered whose last chunk is older
// than ChunkTimeout (or returns ""), and reports whether any message is
// being gathered at all.
func (s *Session) staleChunks() (stale string, any bool) {
	cutoff := time.Now().Add(-s.cfg.ChunkTimeout).UnixNano()
	look := func(g *chunks, what string, id uint64) {
		last := g.last.Load()
		if last == 0 {
			return
		}
		any = true
		if last < cutoff && stale == "" {
			stale = fmt.Sprintf("%s %d", what, id)
		}
	}
	s.servMu.Lock()
	for id, p := range s.partial {
		what := "request"
		if p.stream {
			what = "stream open"
		}
		look(&p.g, what, id)
	}
	s.servMu.Unlock()
	s.pendMu.Lock()
	for id, c := range s.pending {
		look(&c.g, "response", id)
	}
	s.pendMu.Unlock()
	s.strMu.Lock()
	for id, cs := range s.cstreams {
		look(&cs.g, "stream message", id)
	}
	for id, ss := range s.sstreams {
		look(&ss.g, "stream message", id)
	}
	s.strMu.Unlock()
	return stale, any
}
