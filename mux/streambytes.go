package mux

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Stream bytes (MaxStreamBytes, SPEC.md "Stream bytes"). Besides message
// credit, each direction of a stream counts bytes: a message counts
// charge(len) from when it is sent (on the sending side) or arrives (on the
// receiving side) until its credit is granted back, and a message still
// arriving in chunks counts its chunks on the receiving side. Each stream
// may owe up to the receiver's StreamReserve without it counting anywhere
// else; what a stream owes beyond its reserve counts against the
// receiver's MaxStreamBytes, summed over the session. Both sides keep the
// same account (grants name messages in order, so both know which charges
// a grant returns), the sender's never behind the receiver's: a sender
// waits for room, and a receiver that finds its bound exceeded has a peer
// that broke the protocol.

// owedBytes is one stream direction's account: the charges of the
// messages sent (or received) and not yet granted back, oldest first.
type owedBytes struct {
	owed    int64
	charges chargeRuns
}

// excess is what an account owing owed counts beyond the reserve.
func excess(owed, reserve int64) int64 { return max(0, owed-reserve) }

// pop takes the n oldest charges (a grant of n messages), or all there
// are if fewer: a grant can cross the clearing of an account (a stream's
// end); message credit checks that the peer grants no more than it got.
func (o *owedBytes) pop(n int) { o.owed -= o.charges.pop(n) }

// clear forgets every charge and returns what was owed.
func (o *owedBytes) clear() int64 {
	owed := o.owed
	o.owed = 0
	o.charges = chargeRuns{}
	return owed
}

// chargeRuns is a FIFO of charges kept as runs of equal charges, the
// oldest run inline: a stream whose messages are all of one size, the
// common case, allocates nothing however many it has outstanding. The
// runs after the first live apart, made when charges first differ, so
// that the common case does not carry their room in every stream.
type chargeRuns struct {
	first run            // the oldest run; n == 0 when the FIFO is empty
	rest  *msgQueue[run] // the runs after it; nil until charges differ
}

type run struct {
	c int64 // the charge
	n int   // of this many messages in a row
}

// more returns how many runs follow the first.
func (q *chargeRuns) more() int {
	if q.rest == nil {
		return 0
	}
	return q.rest.len()
}

func (q *chargeRuns) push(c int64) {
	switch {
	case q.first.n == 0:
		q.first = run{c, 1}
	case q.more() == 0 && q.first.c == c:
		q.first.n++
	case q.more() > 0 && q.rest.buf[len(q.rest.buf)-1].c == c:
		q.rest.buf[len(q.rest.buf)-1].n++
	default:
		if q.rest == nil {
			q.rest = new(msgQueue[run])
		}
		q.rest.push(run{c, 1})
	}
}

// pop removes the n oldest charges (fewer if there are not so many) and
// returns their sum.
func (q *chargeRuns) pop(n int) (sum int64) {
	for n > 0 && q.first.n > 0 {
		k := min(n, q.first.n)
		sum += int64(k) * q.first.c
		q.first.n -= k
		n -= k
		if q.first.n == 0 && q.more() > 0 {
			q.first = q.rest.pop()
		}
	}
	return sum
}

// sum returns the sum of the n oldest charges (of fewer if there are not
// so many).
func (q *chargeRuns) sum(n int) (sum int64) {
	k := min(n, q.first.n)
	sum, n = int64(k)*q.first.c, n-k
	if q.rest == nil {
		return sum
	}
	for i := q.rest.head; n > 0 && i < len(q.rest.buf); i++ {
		r := q.rest.buf[i]
		k = min(n, r.n)
		sum, n = sum+int64(k)*r.c, n-k
	}
	return sum
}

// unpush removes the newest charge and returns it.
func (q *chargeRuns) unpush() int64 {
	if q.more() == 0 {
		q.first.n--
		return q.first.c
	}
	last := &q.rest.buf[len(q.rest.buf)-1]
	c := last.c
	if last.n--; last.n == 0 {
		q.rest.unpush()
	}
	return c
}

// recvBytes is a stream's account on the receiving side, kept under the
// stream's lock.
type recvBytes struct {
	owedBytes
	partial int64 // of owed: the chunks of a message still arriving
	off     bool  // the stream's messages are dropped: count nothing
}

// countChunk counts a chunk (MaxFramePayload bytes) of a message still
// arriving on stream r.
func (s *Session) countChunk(r *recvBytes) error {
	if r.off {
		return nil
	}
	r.partial += MaxFramePayload
	return s.countIn(r, MaxFramePayload)
}

// countMsg counts a whole message of n bytes arriving on stream r.
func (s *Session) countMsg(r *recvBytes, n int) error {
	if r.off {
		return nil
	}
	c := charge(n)
	r.charges.push(c)
	partial := r.partial
	r.partial = 0
	return s.countIn(r, c-partial)
}

func (s *Session) countIn(r *recvBytes, n int64) error {
	before := excess(r.owed, s.reserveIn)
	r.owed += n
	if d := excess(r.owed, s.reserveIn) - before; d > 0 && s.streamIn.Add(d) > s.cfg.MaxStreamBytes {
		return fmt.Errorf("%w: the peer's stream messages exceed MaxStreamBytes (%d bytes beyond the streams' reserves of %d)", ErrProtocol, s.cfg.MaxStreamBytes, s.reserveIn)
	}
	return nil
}

// grantedIn returns n messages' charges of stream r, whose credit is being
// granted.
func (s *Session) grantedIn(r *recvBytes, n int) {
	if r.off {
		return
	}
	before := excess(r.owed, s.reserveIn)
	r.pop(n)
	s.streamIn.Add(excess(r.owed, s.reserveIn) - before)
}

// dropIn forgets stream r's account: its messages are dropped, and what
// still arrives is not counted.
func (s *Session) dropIn(r *recvBytes) {
	if r.off {
		return
	}
	r.off = true
	s.streamIn.Add(-excess(r.clear(), s.reserveIn))
	r.partial = 0
}

// streamBudget is the peer's MaxStreamBytes as this side's stream senders
// see it: what the streams to the peer owe beyond the peer's reserve. Room
// is taken and given with atomics; the lock is taken only to wait.
type streamBudget struct {
	limit   int64 // the peer's MaxStreamBytes; 0: none announced (no bound)
	reserve int64 // the peer's StreamReserve
	used    atomic.Int64
	waiting atomic.Bool // someone may wait on freed: give must wake them

	mu    sync.Mutex
	freed chan struct{} // closed when room is made or a stream ends
}

// take takes d bytes if they fit; if not, it returns the channel to wait
// on before trying again.
func (b *streamBudget) take(d int64) (ok bool, wait <-chan struct{}) {
	if b.used.Add(d) <= b.limit {
		return true, nil
	}
	b.used.Add(-d)
	b.mu.Lock()
	defer b.mu.Unlock()
	// Marked waiting before trying again: a give after the second try
	// sees the mark, one before it made the room the try finds.
	wait = b.waitLocked()
	if b.used.Add(d) <= b.limit {
		return true, nil
	}
	b.used.Add(-d)
	return false, wait
}

// waitCh returns a channel that is closed the next time bytes are given
// back (or poke is called).
func (b *streamBudget) waitCh() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waitLocked()
}

func (b *streamBudget) waitLocked() <-chan struct{} {
	if b.freed == nil {
		b.freed = make(chan struct{})
	}
	b.waiting.Store(true)
	return b.freed
}

// give returns d bytes and wakes the waiting senders.
func (b *streamBudget) give(d int64) {
	b.used.Add(-d)
	if b.waiting.Load() {
		b.poke()
	}
}

// poke wakes the waiting senders, so that one whose stream ended sees it.
func (b *streamBudget) poke() {
	b.mu.Lock()
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.waiting.Store(false)
	b.mu.Unlock()
}

// reserveOut counts a message of n bytes on the stream whose sending
// account is o (guarded by mu), waiting for room in the peer's
// MaxStreamBytes if it does not fit the stream's reserve. It gives up with
// ended's error once the stream ended, with ctx's error, or with
// ErrDisconnected when the session ends.
func (s *Session) reserveOut(ctx context.Context, mu *sync.Mutex, o *owedBytes, n int, ended func() error) error {
	for {
		mu.Lock()
		ok, wait, err := s.tryReserveOut(o, n, ended)
		mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrDisconnected
		}
	}
}

// tryReserveOut is reserveOut without the wait: it reports whether it
// counted the message, and if not the channel to wait on. mu is held.
func (s *Session) tryReserveOut(o *owedBytes, n int, ended func() error) (ok bool, wait <-chan struct{}, err error) {
	if err := ended(); err != nil {
		return false, nil, err
	}
	b := &s.streamOut
	c := charge(n)
	if b.limit != 0 {
		d := excess(o.owed+c, b.reserve) - excess(o.owed, b.reserve)
		if d > b.limit {
			return false, nil, fmt.Errorf("%w: a stream message of %d bytes exceeds the peer's MaxStreamBytes (%d)", ErrMessageTooLarge, n, b.limit)
		}
		if d > 0 {
			if ok, wait = b.take(d); !ok {
				return false, wait, nil
			}
		}
	}
	o.owed += c
	o.charges.push(c)
	return true, nil, nil
}

// unreserveOut takes back the count of the message reserveOut counted last
// on account o (its lock held), which was not sent after all.
func (s *Session) unreserveOut(o *owedBytes) {
	b := &s.streamOut
	before := excess(o.owed, b.reserve)
	o.owed -= o.charges.unpush()
	if d := before - excess(o.owed, b.reserve); d > 0 && b.limit != 0 {
		b.give(d)
	}
}

// grantedOut returns the charges of n messages the peer granted back on
// the stream whose sending account is o (its lock held).
func (s *Session) grantedOut(o *owedBytes, n int) {
	b := &s.streamOut
	before := excess(o.owed, b.reserve)
	o.pop(n)
	if d := before - excess(o.owed, b.reserve); d > 0 && b.limit != 0 {
		b.give(d)
	}
}

// clearOut forgets the sending account o (its lock held): the peer let go
// of the stream's messages (it cancelled, or the stream ended).
func (s *Session) clearOut(o *owedBytes) {
	b := &s.streamOut
	if d := excess(o.clear(), b.reserve); d > 0 && b.limit != 0 {
		b.give(d)
	}
}

// overReserve reports whether the sending account o owes more than the
// peer's reserve: a stream's end waits until it does not (SPEC.md).
func (s *Session) overReserve(o *owedBytes) bool {
	return s.streamOut.limit != 0 && o.owed > s.streamOut.reserve
}

// streamCounters: this side's count of what the peer's stream messages
// beyond their reserves make it hold.
type streamCounters struct {
	streamIn  atomic.Int64
	reserveIn int64 // this side's StreamReserve
}

// The observer. A consumer that reads its channel (a caller's Responses, a
// Handle handler's in) takes messages unseen: the reader, the forwarder
// and Recv see what was taken only when they next look at the channel's
// length. Message credit never waits on that (when the sender runs out of
// credit, a message waits behind the channel and its mover sees the
// takes), but bytes may: a stream that owes more than its reserve holds
// room in MaxStreamBytes that other streams' senders, and its own
// handler's end, wait for. So while a stream owes more than its reserve
// and has messages in its consumer's channel, the observer looks at it
// every few milliseconds and grants what was taken. It backs off (up to
// observeMax) while nothing is taken, and stops when no stream needs it.

const (
	observeMin = time.Millisecond
	observeMax = 64 * time.Millisecond
)

// observer is a session's set of streams to look at.
type observer struct {
	mu    sync.Mutex
	cs    map[*cstream]struct{}
	ss    map[*sstream]struct{}
	timer *time.Timer
	every time.Duration
}

// watchC makes the observer look at cs (its lock held) if it owes more
// than its reserve with messages in Responses.
func (s *Session) watchC(cs *cstream) {
	if cs.out.bytes.owed <= s.reserveIn || len(cs.resp) == 0 || cs.watched {
		return
	}
	cs.watched = true
	o := &s.obs
	o.mu.Lock()
	if o.cs == nil {
		o.cs = make(map[*cstream]struct{})
	}
	o.cs[cs] = struct{}{}
	o.armLocked(s)
	o.mu.Unlock()
}

// watchS is watchC for a served stream's input (its lock held).
func (s *Session) watchS(ss *sstream) {
	if ss.inCr.bytes.owed <= s.reserveIn || len(ss.in) == 0 || ss.watched {
		return
	}
	ss.watched = true
	o := &s.obs
	o.mu.Lock()
	if o.ss == nil {
		o.ss = make(map[*sstream]struct{})
	}
	o.ss[ss] = struct{}{}
	o.armLocked(s)
	o.mu.Unlock()
}

// armLocked starts the observer's timer at its shortest period.
func (o *observer) armLocked(s *Session) {
	o.every = observeMin
	if o.timer == nil {
		o.timer = time.AfterFunc(o.every, s.observe)
	} else {
		o.timer.Reset(o.every)
	}
}

// observe looks at every watched stream once.
func (s *Session) observe() {
	o := &s.obs
	o.mu.Lock()
	css := make([]*cstream, 0, len(o.cs))
	for cs := range o.cs {
		css = append(css, cs)
	}
	sss := make([]*sstream, 0, len(o.ss))
	for ss := range o.ss {
		sss = append(sss, ss)
	}
	o.mu.Unlock()
	granted := false
	// A stream leaves the set under its own lock, so that a stream
	// watched again meanwhile is not lost.
	for _, cs := range css {
		cs.mu.Lock()
		if !cs.final {
			if g := s.grantable(&cs.out, len(cs.resp)); g > 0 {
				s.grant(OpStreamCreditOut, cs.id, g)
				granted = true
			}
		}
		if cs.final || cs.out.bytes.owed <= s.reserveIn || len(cs.resp) == 0 {
			cs.watched = false
			o.mu.Lock()
			delete(o.cs, cs)
			o.mu.Unlock()
		}
		cs.mu.Unlock()
	}
	for _, ss := range sss {
		ss.mu.Lock()
		if !ss.cancelled && !ss.inClosed {
			if g := s.grantable(&ss.inCr, len(ss.in)); g > 0 {
				s.grant(OpStreamCreditIn, ss.id, g)
				granted = true
			}
		}
		if ss.cancelled || ss.inClosed || ss.inShut || ss.inCr.bytes.owed <= s.reserveIn || len(ss.in) == 0 {
			ss.watched = false
			o.mu.Lock()
			delete(o.ss, ss)
			o.mu.Unlock()
		}
		ss.mu.Unlock()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	select {
	case <-s.closing:
		return
	default:
	}
	if len(o.cs)+len(o.ss) == 0 {
		return
	}
	if granted {
		o.every = observeMin
	} else {
		o.every = min(2*o.every, observeMax)
	}
	o.timer.Reset(o.every)
}

// stopObserver stops the observer once the session ended.
func (s *Session) stopObserver() {
	o := &s.obs
	o.mu.Lock()
	if o.timer != nil {
		o.timer.Stop()
	}
	clear(o.cs)
	clear(o.ss)
	o.mu.Unlock()
}
