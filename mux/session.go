package mux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// Session multiplexes single requests in both directions over one ordered,
// reliable pipe (a TCP connection, a WebSocket adapted to net.Conn, a
// net.Pipe). Either side may call Request; each side serves the requests of
// the other from its Registry.
//
// A Session owns these goroutines, all started by NewSession, the reader
// or NewStream and all waited for by Close: one reader (replaced, by the
// watchdog's timer or by the session's end, when an inline handler
// overruns Config.InlineBudget, the old one finishing the handler as a
// worker), one writer, the workers that run
// handlers (at most Config.MaxConcurrent; a worker stays
// for the next request and leaves after one to two workerIdle periods
// without one), and for streams: a served stream's handler (and, for the
// Handle form, its pump),
// the forwarder of a NewStream stream's Requests, and a goroutine per
// stream while its consumer lags (see cstream.forward, sstream).
//
// All methods may be called concurrently.
type Session struct {
	conn io.ReadWriteCloser
	reg  *handlers.Registry
	cfg  Config
	q    *writeQueue

	ready    chan struct{} // closed when the peer's hello arrived
	peer     hello         // valid after ready
	version  uint8         // spoken on the session: the lower of ours and the peer's; valid after ready
	gotHello bool          // reader only
	inTrace  inTrace       // an OpTrace waiting for its call's first chunk; reader only
	ic       interceptors  // the chains of Config's interceptors
	ackedAt  time.Time     // when the reader last sent an OpAck; reader only
	readAt   int64         // when the last pipe read returned (monoNow), with Config.Observer: its frames' arrival; reader only
	maxSend  int           // min(own, peer's) message size; valid after ready
	slots    chan struct{} // outgoing request slots; made before ready closes

	// What a request takes under pendMu sits together, so that a caller
	// moves one cache line between the cores, not three.
	pendMu      sync.Mutex
	nextID      atomic.Uint64
	pending     map[uint64]*call // requests sent by this side, by ID
	requestsOut uint64           // requests sent by this side; guarded by pendMu

	servMu     sync.Mutex
	servClosed bool                // set once the session ended: start no more handlers
	serving    map[uint64]*reqCtx  // requests being served, by the peer's ID
	partial    map[uint64]*partial // requests whose chunks are still arriving
	handlers   sync.WaitGroup
	hslots     chan struct{} // handler slots; a token per running handler
	workers    workerPool    // idle workers, waiting for a request
	rd         *readState    // the read side, owned by whichever goroutine reads (inline.go)
	inl        inlineGuard   // the watchdog over inline handlers (inline.go)

	strMu    sync.Mutex
	cstreams map[uint64]*cstream // streams this side opened, by ID
	sstreams map[uint64]*sstream // streams served for the peer, by the peer's ID
	cslots   chan struct{}       // stream slots for streams we open; made before ready closes
	sslots   chan struct{}       // stream slots for streams we serve
	// Stream bytes (streambytes.go): what the peer's stream messages make
	// this side hold, and the peer's MaxStreamBytes as this side's stream
	// senders see it (set from the hello before ready closes).
	streamCounters
	streamOut streamBudget
	obs       observer

	pingMu sync.Mutex
	pings  map[uint64]chan struct{}

	// Byte bounds (SPEC.md, Limits): this side's, counting what the peer
	// makes it hold, and the peer's, reserved from by this side's senders
	// (their limits are set from the peer's hello before ready closes).
	reqIn, respIn   tally
	reqOut, respOut budget
	// The reaper of messages whose chunks stopped coming (ChunkTimeout).
	reaping atomic.Bool
	reapMu  sync.Mutex
	reaper  *time.Timer

	closing    chan struct{} // closed by fail
	told       chan struct{} // closed by fail once the close frame is queued
	failOnce   sync.Once
	err        error // why the session ended; set before closing is closed
	readerDone chan struct{}
	writerDone chan struct{}
	killTimer  *time.Timer // closes conn if the final flush hangs

	stats counters
}

// counters are updated with atomics. They are grouped by the goroutines
// that update them, a cache line apart, so that the reader, the writer,
// callers and handlers do not slow each other down by sharing a line.
type counters struct {
	_                 cacheLinePad
	bytesIn, framesIn atomic.Uint64 // reader
	remoteErrs        atomic.Uint64 // reader
	dispatched        atomic.Uint64 // reader: requests handed to a handler
	peerRead          atomic.Uint64 // reader: the peer's last OpAck
	streamsServed     atomic.Uint64 // reader: stream handlers started
	inline            atomic.Uint64 // reader: requests served on the reader
	handoffs          atomic.Uint64 // inline watchdog: reading moved to a new goroutine
	_                 cacheLinePad
	bytesOut, writes  atomic.Uint64 // writer
	_                 cacheLinePad
	cancelled         atomic.Uint64 // callers
	_                 cacheLinePad
	served            atomic.Uint64 // handlers: handlers returned
	answered          atomic.Uint64 // handlers: answers queued
	streamsReturned   atomic.Uint64 // stream handlers returned
	_                 cacheLinePad
}

type cacheLinePad [64]byte

// NewSession starts a session over conn, serving requests from reg (which
// may be nil: every request is then answered with ErrUnknownHandler). The
// session owns conn from now on and closes it when the session ends.
// It returns an error only for an invalid cfg.
func NewSession(conn io.ReadWriteCloser, reg *handlers.Registry, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Session{
		conn:       conn,
		reg:        reg,
		cfg:        cfg,
		q:          newWriteQueue(cfg.MaxQueuedBytes),
		ready:      make(chan struct{}),
		pending:    make(map[uint64]*call),
		serving:    make(map[uint64]*reqCtx),
		partial:    make(map[uint64]*partial),
		hslots:     make(chan struct{}, cfg.MaxConcurrent),
		pings:      make(map[uint64]chan struct{}),
		cstreams:   make(map[uint64]*cstream),
		sstreams:   make(map[uint64]*sstream),
		sslots:     make(chan struct{}, cfg.MaxStreams),
		closing:    make(chan struct{}),
		told:       make(chan struct{}),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	s.reserveIn = streamReserve(cfg)
	s.reqIn = tally{limit: cfg.MaxRequestBytes, name: "MaxRequestBytes"}
	s.respIn = tally{limit: cfg.MaxResponseBytes, name: "MaxResponseBytes"}
	h := hello{Version: Version, MaxMessageSize: uint32(cfg.MaxMessageSize),
		MaxConcurrent: uint32(cfg.MaxConcurrent), MaxStreams: uint32(cfg.MaxStreams),
		MaxRequestBytes: uint64(cfg.MaxRequestBytes), MaxResponseBytes: uint64(cfg.MaxResponseBytes),
		MaxStreamBytes: uint64(cfg.MaxStreamBytes), StreamReserve: uint32(s.reserveIn)}
	// The queue is empty and open, so this cannot fail.
	_ = s.q.put(context.Background(), s.closing, Header{Op: OpHello}, h.append(nil), control)
	s.buildInterceptors()
	helloTimer := time.AfterFunc(cfg.HelloTimeout, func() {
		select {
		case <-s.ready:
		default:
			s.fail(fmt.Errorf("%w: no hello from peer within %v", ErrProtocol, cfg.HelloTimeout))
		}
	})
	pr := newPipeReader(s.conn, &s.stats.bytesIn, s.ackRead)
	s.rd = &readState{pr: pr, br: pr.small, helloTimer: helloTimer}
	if cfg.Observer != nil {
		pr.stamp = &s.readAt
	}
	go s.writeLoop()
	go s.readLoop(s.rd)
	return s, nil
}

// Done returns a channel that is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.closing }

// Err returns why the session ended, or nil while it is open.
func (s *Session) Err() error {
	select {
	case <-s.closing:
		return s.err
	default:
		return nil
	}
}

// Ready returns a channel that is closed once the peer's hello has arrived.
func (s *Session) Ready() <-chan struct{} { return s.ready }

// Version returns the protocol version the session speaks, the lower of
// the two ends' (see SPEC.md); 0 until Ready is closed.
func (s *Session) Version() int {
	select {
	case <-s.ready:
		return int(s.version)
	default:
		return 0
	}
}

// errClosed is the reason recorded when Close is called.
var errClosed = fmt.Errorf("%w: session closed", ErrDisconnected)

// Close ends the session: requests in flight fail with ErrDisconnected,
// running handlers see their contexts cancelled, the peer is told, and the
// pipe is closed. Close waits for the session's goroutines, including the
// running handlers, so handlers must honour their context. Close is
// idempotent and returns nil.
func (s *Session) Close() error {
	s.Abandon()
	s.handlers.Wait()
	return nil
}

// Abandon ends the session as Close does, but waits only for its reader
// and writer (the writer's last flush is bounded by Config.CloseTimeout),
// not for its handlers: a handler that ignores its cancelled context keeps
// running on its own, its answer is dropped (the pipe is closed), and
// Stats counts it in OrphanedHandlers until it returns. Call Close later
// to wait for them. Abandon is idempotent.
func (s *Session) Abandon() {
	s.fail(errClosed)
	<-s.readerDone
	<-s.writerDone
}

// fail ends the session for err; the first error wins.
func (s *Session) fail(err error) {
	s.failOnce.Do(func() {
		s.err = err
		s.killTimer = time.AfterFunc(s.cfg.CloseTimeout, func() { s.conn.Close() })
		s.strMu.Lock() // NewStream counts its goroutine under strMu
		close(s.closing)
		s.strMu.Unlock()
		// A reader in an inline handler reads no more: a new one sees
		// closing at once.
		s.inlineOverrun()
		// The peer is told only now that closing is closed, and the
		// reader dispatches no frame it reads after that: whatever the
		// peer answers once it knows (its cancelled handlers answer at
		// once) cannot reach a caller here, who gets ErrDisconnected.
		// And it is told before the handlers here are cancelled, so
		// their answers follow the close frame and the peer's callers
		// get ErrDisconnected too. The writer waits for told before its
		// last write.
		if !errors.Is(err, ErrDisconnected) || err == errClosed {
			// Tell the peer why, unless the pipe itself is gone.
			reason := err.Error()
			_ = s.q.put(context.Background(), nil, Header{Op: OpClose}, []byte(reason), control)
		}
		close(s.told)
		s.failPending(err)
		s.cancelServing()
		s.endStreams(s.disconnected())
		s.reapMu.Lock()
		if s.reaper != nil {
			s.reaper.Stop()
		}
		s.reapMu.Unlock()
		s.stopObserver()
		s.pingMu.Lock()
		for id, ch := range s.pings {
			close(ch)
			delete(s.pings, id)
		}
		s.pingMu.Unlock()
		if err != errClosed {
			s.cfg.Logger.Debug("mux: session ended", "err", err)
		}
	})
}

// writeLoop owns the write side of conn.
func (s *Session) writeLoop() {
	defer close(s.writerDone)
	var spare []byte
	for {
		select {
		case <-s.q.wake:
			// Let goroutines that are ready to send (callers woken by the
			// last batch of answers, finishing handlers, a stream's
			// sender, other callers picking this peer) queue their frames
			// first, so they leave in this write rather than one write
			// each. This pays even when this frame looks alone on the
			// session: in a mesh a connection carries a call or two at a
			// time, and company comes from goroutines the session cannot
			// count; a lone frame with nobody else ready loses one
			// Gosched.
			s.awaitCompany()
			out := s.q.take(spare)
			if len(out) == 0 {
				spare = out
				continue
			}
			if err := s.write(out); err != nil {
				// spare is the queue's buffer now: drop it, or the next
				// take would hand the writer the buffer senders fill.
				spare = nil
				s.fail(fmt.Errorf("%w: write: %w", ErrDisconnected, err))
				continue
			}
			if cap(out) > 4*s.cfg.MaxQueuedBytes {
				out = nil // do not keep a buffer grown by one burst
			}
			spare = out[:0]
		case <-s.closing:
			<-s.told
			_ = s.write(s.q.close()) // best effort; killTimer bounds it
			s.conn.Close()
			s.killTimer.Stop()
			return
		}
	}
}

// awaitCompany yields to the goroutines that are ready to run while that makes
// the queue grow, a few times at most, so that frames queued by them leave
// in one write.
func (s *Session) awaitCompany() {
	n := s.q.queued()
	for range maxGatherYields {
		runtime.Gosched()
		m := s.q.queued()
		if m == n {
			return
		}
		n = m
	}
}

// maxGatherYields bounds the yields of awaitCompany.
const maxGatherYields = 4

// write writes a batch in pieces of at most MaxWriteSize bytes.
func (s *Session) write(out []byte) error {
	for len(out) > 0 {
		n := min(len(out), MaxWriteSize)
		if _, err := s.conn.Write(out[:n]); err != nil {
			return err
		}
		out = out[n:]
		s.stats.bytesOut.Add(uint64(n))
		s.stats.writes.Add(1)
	}
	return nil
}

func (s *Session) handleHello(br *bufio.Reader, h Header) error {
	if s.gotHello {
		return fmt.Errorf("%w: second hello", ErrProtocol)
	}
	p, err := readPayload(br, h.Length)
	if err != nil {
		return err
	}
	hl, err := parseHello(p)
	if err != nil {
		return err
	}
	// Both sides speak the lower of the two versions; every version from
	// 1 up is spoken (parseHello refused 0).
	s.version = min(hl.Version, Version)
	s.gotHello = true
	s.peer = hl
	s.maxSend = min(s.cfg.MaxMessageSize, int(min(hl.MaxMessageSize, maxMaxMessageSize)))
	s.slots = make(chan struct{}, min(s.cfg.MaxInFlight, int(min(hl.MaxConcurrent, 1<<20))))
	s.cslots = make(chan struct{}, min(s.cfg.MaxStreams, int(min(hl.MaxStreams, 1<<20))))
	s.reqOut.limit, s.respOut.limit = int64(hl.MaxRequestBytes), int64(hl.MaxResponseBytes)
	s.streamOut.limit, s.streamOut.reserve = int64(hl.MaxStreamBytes), int64(hl.StreamReserve)
	close(s.ready)
	return nil
}

func readPayload(br *bufio.Reader, n uint32) ([]byte, error) {
	p := make([]byte, n) // n <= MaxFramePayload, checked by ParseHeader
	if _, err := io.ReadFull(br, p); err != nil {
		return nil, readError(err)
	}
	return p, nil
}

func skip(br *bufio.Reader, n uint32) error {
	if _, err := br.Discard(int(n)); err != nil {
		return readError(err)
	}
	return nil
}

// Ping measures the round-trip time to the peer with an OpPing frame.
func (s *Session) Ping(ctx context.Context) (time.Duration, error) {
	if err := s.waitReady(ctx); err != nil {
		return 0, err
	}
	id := s.nextID.Add(1)
	ch := make(chan struct{})
	s.pingMu.Lock()
	select {
	case <-s.closing:
		s.pingMu.Unlock()
		return 0, s.disconnected()
	default:
	}
	s.pings[id] = ch
	s.pingMu.Unlock()
	defer func() {
		s.pingMu.Lock()
		delete(s.pings, id)
		s.pingMu.Unlock()
	}()
	start := time.Now()
	if err := s.q.put(ctx, s.closing, Header{Op: OpPing, ID: id}, nil, control); err != nil {
		return 0, s.sendError(err)
	}
	select {
	case <-ch:
		select {
		case <-s.closing:
			return 0, s.disconnected()
		default:
		}
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *Session) handlePong(id uint64) {
	s.pingMu.Lock()
	if ch, ok := s.pings[id]; ok {
		close(ch)
		delete(s.pings, id)
	}
	s.pingMu.Unlock()
}

// waitReady waits for the peer's hello.
func (s *Session) waitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	select {
	case <-s.ready:
		return nil
	case <-s.closing:
		return s.disconnected()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// disconnected returns the error for calls on an ended session.
func (s *Session) disconnected() error {
	<-s.closing
	if errors.Is(s.err, ErrDisconnected) {
		return s.err
	}
	return fmt.Errorf("%w: %w", ErrDisconnected, s.err)
}

// sendError maps a writeQueue error to what a caller sees.
func (s *Session) sendError(err error) error {
	if errors.Is(err, ErrDisconnected) || errors.Is(err, errQueueOverflow) {
		return s.disconnected()
	}
	return err
}
