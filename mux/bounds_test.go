package mux_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var hsSink = handlers.New(37, "stream-sink")

// sinkRegistry serves hBlock, a request handler that holds its payload
// until its context ends, and hsSink, a stream handler that takes no
// input (InCapacity 1000, so that credit never stops its caller: only
// MaxStreamBytes does) until its context ends.
func sinkRegistry(tb testing.TB) *handlers.Registry {
	reg := new(handlers.Registry)
	mustRegister(tb, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	mustStream(tb, reg, hsSink, handlers.StreamHandler{InCapacity: 1000, Serve: func(ctx context.Context, _ []byte, _ handlers.ServerStream) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	return reg
}

// TestMemoryBoundAdversary drives a session at every one of its memory
// limits at once from an adversarial peer speaking raw frames over TCP,
// and checks that the memory the session then holds (heap and goroutine
// stacks, after GC) stays under Config.MemoryBound, the formula doc.go
// documents. At once, the peer:
//
//   - fills MaxRequestBytes: stream opens with payloads, requests in
//     chunks held by handlers that do not return, and a request whose
//     last chunk never comes;
//   - fills every other handler slot (MaxConcurrent) with a request of a
//     whole frame (64 KiB) held by its handler;
//   - fills every stream slot it may (MaxStreams) and MaxStreamBytes: each
//     stream it opens gets a message as large as its reserve, some get
//     messages of MaxMessageSize on top, one a message that stays
//     unfinished, and its handler reads nothing;
//   - answers the session's own streams (MaxStreams more) with a message
//     as large as each stream's reserve, which the session's caller does
//     not read;
//   - answers the session's own requests with responses in chunks that
//     never end, up to MaxResponseBytes;
//   - stops reading and sends pings until the session's queue of frames to
//     write nears the bound beyond which a peer that does not read is cut
//     off (4 × MaxQueuedBytes + 1 MiB).
//
// The session must still be up, every limit reached, and its memory under
// the formula.
func TestMemoryBoundAdversary(t *testing.T) {
	if testing.Short() {
		t.Skip("moves some 40 MiB")
	}
	const (
		maxMsg = 1 << 20
		slots  = 64
		bound  = 8 << 20 // MaxRequestBytes, MaxResponseBytes and MaxStreamBytes
		chunk  = mux.MaxFramePayload
		over   = 128 // what a message counts beyond its length
	)
	cfg := mux.Config{
		MaxMessageSize: maxMsg, MaxConcurrent: slots, MaxStreams: slots,
		MaxQueuedBytes:  256 << 10,
		MaxRequestBytes: bound, MaxResponseBytes: bound, MaxStreamBytes: bound,
		ChunkTimeout: time.Minute, // not to cut off the unfinished messages while measuring
	}
	formula := cfg.MemoryBound()
	reg := sinkRegistry(t)
	base := memInUse()
	s, p, _ := newRawPeer(t, reg, cfg)
	reserve := int(binary.BigEndian.Uint32(p.peerHello[44:]))
	if reserve != 64<<10 {
		t.Fatalf("stream reserve %d, want 64 KiB (MaxStreamBytes / 2 × MaxStreams)", reserve)
	}

	// The peer's reader: it accepts the session's streams (out capacity
	// 1000: credit never stops the peer) and notes the session's requests
	// and its accepts, until told to stop reading.
	ours := make(chan uint64, 2*slots) // the session's streams
	reqs := make(chan uint64, 2*slots) // the session's requests
	accepted := make(chan uint64, 2*slots)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			h, _, err := readFrame(p.c)
			if err != nil {
				return // the read deadline stopped it, or the session ended
			}
			switch h.Op {
			case mux.OpStreamOpen:
				var acc [8]byte
				binary.BigEndian.PutUint32(acc[:], 1)
				binary.BigEndian.PutUint32(acc[4:], 1000)
				p.send(mux.Header{Op: mux.OpStreamAccept, ID: h.ID}, acc[:])
				p.flush()
				ours <- h.ID
			case mux.OpRequest:
				reqs <- h.ID
			case mux.OpStreamAccept:
				if h.Flags&mux.FlagError != 0 {
					t.Errorf("stream %d refused", h.ID)
				}
				accepted <- h.ID
			}
		}
	}()

	// The session's side: callers that open streams and send requests to
	// the peer, and read nothing.
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var callers sync.WaitGroup
	for range slots {
		if _, err := s.OpenStream(ctx, hsSink, nil); err != nil {
			t.Fatal(err)
		}
	}
	const responses = 9
	for range responses {
		callers.Go(func() { _, _ = s.Request(ctx, hEcho, []byte("x")) })
	}

	// MaxRequestBytes: stream payloads, requests held by handlers, and one
	// request left unfinished.
	requestBytes := 0
	const openPayload = 16 << 10
	for i := range slots {
		p.sendN(mux.Header{Op: mux.OpStreamOpen, Handler: hsSink, ID: uint64(1000 + i)}, openPayload)
		requestBytes += openPayload + over
	}
	p.flush()
	served := make([]uint64, 0, slots)
	for range slots {
		served = append(served, recv(t, accepted))
	}
	held := 0
	for requestBytes+maxMsg+over <= bound {
		p.chunks(mux.Header{Op: mux.OpRequest, Handler: hBlock, ID: uint64(2000 + held)}, maxMsg, false)
		requestBytes += maxMsg + over
		held++
	}
	n := (bound - requestBytes) / chunk
	p.chunks(mux.Header{Op: mux.OpRequest, Handler: hBlock, ID: 2100}, (n+1)*chunk, true)
	requestBytes += n * chunk
	// MaxConcurrent: the other handler slots, with requests of a frame.
	for i := range slots - held - 1 {
		p.sendN(mux.Header{Op: mux.OpRequest, Handler: hBlock, ID: uint64(3000 + i)}, chunk)
	}

	// MaxStreamBytes: every stream as much as its reserve, the peer's
	// streams MaxStreamBytes on top, the last message unfinished.
	streamBytes := 0
	for _, id := range served {
		p.sendN(mux.Header{Op: mux.OpStreamIn, ID: id}, reserve-over)
		streamBytes += reserve
	}
	beyond := 0
	for i := 0; beyond+maxMsg+over <= bound; i++ {
		p.chunks(mux.Header{Op: mux.OpStreamIn, ID: served[i]}, maxMsg, false)
		beyond += maxMsg + over
	}
	n = (bound - beyond) / chunk
	p.chunks(mux.Header{Op: mux.OpStreamIn, ID: served[len(served)-1]}, (n+1)*chunk, true)
	beyond += n * chunk
	streamBytes += beyond
	for range slots {
		p.sendN(mux.Header{Op: mux.OpStreamOut, ID: recv(t, ours)}, reserve-over)
		streamBytes += reserve
	}

	// MaxResponseBytes: the session's requests answered in chunks that
	// never end.
	responseBytes := 0
	for i := range responses {
		id := recv(t, reqs)
		n := min(maxMsg/chunk-1, (bound-responseBytes)/chunk)
		if i == responses-1 {
			n = (bound - responseBytes) / chunk
		}
		p.chunks(mux.Header{Op: mux.OpResponse, ID: id}, (n+1)*chunk, true)
		responseBytes += n * chunk
	}
	p.flush()
	waitUntil(t, "the session holds every stream and handler", func() bool {
		st := s.Stats()
		return st.StreamsIn == slots && st.Running == slots
	})
	waitSettled(t, s)

	// The queue of frames to write: the peer stops reading, and pings.
	_ = p.c.SetReadDeadline(time.Now())
	<-readerDone
	hard := 4*cfg.MaxQueuedBytes + 1<<20
	target := hard - 64<<10
	for id := uint64(1); s.Stats().QueuedBytes < target; {
		// Each ping queues a pong of a header's size: half the way to
		// the target at a time, each batch read before the next, so as
		// not to go past the bound.
		read := s.Stats().FramesIn
		n := max(1, (target-s.Stats().QueuedBytes)/mux.HeaderSize/2)
		for range n {
			p.send(mux.Header{Op: mux.OpPing, ID: id}, nil)
			id++
		}
		p.flush()
		waitUntil(t, "the pings read", func() bool { return s.Stats().FramesIn >= read+uint64(n) })
	}

	st := s.Stats()
	if err := s.Err(); err != nil {
		t.Fatalf("the session ended under the load: %v", err)
	}
	if st.StreamsIn != slots || st.StreamsOut != slots || st.Running != slots {
		t.Fatalf("streams in %d, out %d, handlers running %d: want %d each", st.StreamsIn, st.StreamsOut, st.Running, slots)
	}
	if requestBytes < bound-chunk || responseBytes < bound-chunk || beyond < bound-chunk {
		t.Fatalf("bounds not reached: requests %d, responses %d, streams beyond reserves %d of %d", requestBytes, responseBytes, beyond, bound)
	}
	m := memInUse()
	used := m.heap + m.stacks - base.heap - base.stacks
	t.Logf("held at every limit: requests %.1f MiB, responses %.1f MiB, stream messages %.1f MiB (%.1f beyond the reserves), %d handlers, %d+%d streams, %.1f MiB queued to write",
		mib(requestBytes), mib(responseBytes), mib(streamBytes), mib(beyond), st.Running, st.StreamsIn, st.StreamsOut, mib(st.QueuedBytes))
	t.Logf("session memory %.1f MiB (heap %.1f + stacks %.1f), formula (Config.MemoryBound) %.1f MiB: %.0f%%",
		mib(int(used)), mib(int(m.heap-base.heap)), mib(int(m.stacks-base.stacks)), mib(int(formula)), 100*float64(used)/float64(formula))
	if used > formula {
		t.Errorf("the session holds %d bytes, more than its bound of %d", used, formula)
	}
	cancel()
	p.c.Close()
	callers.Wait()
}

func mib(n int) float64 { return float64(n) / (1 << 20) }

// waitUntil waits until cond holds, failing tb after testTimeout.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitSettled waits until the session has read everything the peer sent:
// its count of frames read stops moving.
func waitSettled(tb testing.TB, s *mux.Session) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	last, since := s.Stats().FramesIn, time.Now()
	for time.Since(since) < 50*time.Millisecond {
		time.Sleep(5 * time.Millisecond)
		if n := s.Stats().FramesIn; n != last {
			last, since = n, time.Now()
		}
		if time.Now().After(deadline) {
			tb.Fatal("the session keeps reading")
		}
	}
}

// TestBoundBreaches: a peer that goes beyond one of the session's byte
// bounds (by a single chunk, having filled it) breaks the protocol: the
// session ends at once with a reason naming the bound, which the peer is
// told in a close frame.
func TestBoundBreaches(t *testing.T) {
	const (
		maxMsg = 1 << 20
		bound  = 2 << 20
		chunk  = mux.MaxFramePayload
	)
	cfg := mux.Config{MaxMessageSize: maxMsg, MaxRequestBytes: bound, MaxResponseBytes: bound, MaxStreamBytes: bound, MaxStreams: 4, MaxConcurrent: 4}
	for _, tc := range []struct {
		name, reason string
		breach       func(t *testing.T, s *mux.Session, p *rawPeer)
	}{
		{"MaxRequestBytes", "MaxRequestBytes", func(t *testing.T, s *mux.Session, p *rawPeer) {
			// Unfinished requests of 15 chunks each: the third goes over.
			for i := range 3 {
				p.chunks(mux.Header{Op: mux.OpRequest, Handler: hBlock, ID: uint64(i + 1)}, maxMsg, true)
			}
		}},
		{"MaxResponseBytes", "MaxResponseBytes", func(t *testing.T, s *mux.Session, p *rawPeer) {
			reqs := make(chan uint64, 3)
			go func() {
				for {
					h, _, err := readFrame(p.c)
					if err != nil {
						return
					}
					if h.Op == mux.OpRequest {
						reqs <- h.ID
					}
				}
			}()
			for range 3 {
				go func() { _, _ = s.Request(context.Background(), hEcho, nil) }()
			}
			for range 3 {
				p.chunks(mux.Header{Op: mux.OpResponse, ID: recv(t, reqs)}, maxMsg, true)
			}
		}},
		{"MaxStreamBytes", "MaxStreamBytes", func(t *testing.T, s *mux.Session, p *rawPeer) {
			accepted := make(chan uint64, 1)
			go func() {
				for {
					h, _, err := readFrame(p.c)
					if err != nil {
						return
					}
					if h.Op == mux.OpStreamAccept {
						accepted <- h.ID
					}
				}
			}()
			p.send(mux.Header{Op: mux.OpStreamOpen, Handler: hsSink, ID: 1}, nil)
			p.flush()
			id := recv(t, accepted)
			// Whole messages up to the bound (plus the stream's reserve),
			// then one chunk more.
			for sent := 0; sent <= bound; sent += maxMsg + 128 {
				p.chunks(mux.Header{Op: mux.OpStreamIn, ID: id}, maxMsg, false)
			}
			p.chunks(mux.Header{Op: mux.OpStreamIn, ID: id}, 2*chunk, true)
		}},
		{"partials", "arriving in chunks at once", func(t *testing.T, s *mux.Session, p *rawPeer) {
			// Refused requests (no slot) cost a partial each: more than
			// MaxConcurrent + MaxStreams at once break the protocol.
			for i := range 4 + 4 + 1 {
				p.chunks(mux.Header{Op: mux.OpRequest, Handler: hBlock, ID: uint64(i + 1)}, 2*chunk, true)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, p, _ := newRawPeer(t, sinkRegistry(t), cfg)
			tc.breach(t, s, p)
			p.flush()
			select {
			case <-s.Done():
			case <-time.After(testTimeout):
				t.Fatal("the session did not end")
			}
			if err := s.Err(); !errors.Is(err, mux.ErrProtocol) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("the session ended with %v, want a protocol error naming %s", err, tc.reason)
			}
			t.Logf("ended: %v", s.Err())
		})
	}
}

// TestChunkTimeout: a message whose chunks stop coming ends the session
// with a protocol error once ChunkTimeout passed (the reaper looks every
// quarter of it), whatever kind of message it is; one that keeps coming,
// however slowly within the timeout, does not.
func TestChunkTimeout(t *testing.T) {
	// 1 s: the slow message's chunks, a fifth of it apart, must never be
	// a timeout apart on a loaded machine.
	const timeout = time.Second
	cfg := mux.Config{ChunkTimeout: timeout}
	for _, tc := range []struct {
		name string
		send func(t *testing.T, s *mux.Session, p *rawPeer)
	}{
		{"request", func(t *testing.T, s *mux.Session, p *rawPeer) {
			p.chunks(mux.Header{Op: mux.OpRequest, Handler: hBlock, ID: 1}, 3*mux.MaxFramePayload, true)
		}},
		{"stream open", func(t *testing.T, s *mux.Session, p *rawPeer) {
			p.chunks(mux.Header{Op: mux.OpStreamOpen, Handler: hsSink, ID: 1}, 3*mux.MaxFramePayload, true)
		}},
		{"stream message", func(t *testing.T, s *mux.Session, p *rawPeer) {
			p.send(mux.Header{Op: mux.OpStreamOpen, Handler: hsSink, ID: 1}, nil)
			p.chunks(mux.Header{Op: mux.OpStreamIn, ID: 1}, 3*mux.MaxFramePayload, true)
		}},
		{"response", func(t *testing.T, s *mux.Session, p *rawPeer) {
			go func() { _, _ = s.Request(context.Background(), hEcho, nil) }()
			for {
				h, _, err := readFrame(p.c)
				if err != nil {
					t.Error(err)
					return
				}
				if h.Op == mux.OpRequest {
					p.chunks(mux.Header{Op: mux.OpResponse, ID: h.ID}, 3*mux.MaxFramePayload, true)
					return
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, p, _ := newRawPeer(t, sinkRegistry(t), cfg)
			// A slow message whose chunks keep coming (a chunk every fifth
			// of the timeout) is not cut off.
			for seq := range uint32(4) {
				h := mux.Header{Op: mux.OpRequest, ID: 99, Seq: seq, Flags: mux.FlagMore}
				if seq == 0 {
					h.Handler = hBlock
				}
				p.sendN(h, mux.MaxFramePayload)
				p.flush()
				time.Sleep(timeout / 5)
			}
			p.sendN(mux.Header{Op: mux.OpRequest, ID: 99, Seq: 4}, 10)
			p.flush()
			if err := s.Err(); err != nil {
				t.Fatalf("a slow message ended the session: %v", err)
			}
			start := time.Now()
			tc.send(t, s, p)
			p.flush()
			go drainConn(p.c)
			select {
			case <-s.Done():
			case <-time.After(testTimeout):
				t.Fatal("the session did not end")
			}
			took := time.Since(start)
			if err := s.Err(); !errors.Is(err, mux.ErrProtocol) || !strings.Contains(err.Error(), "ChunkTimeout") {
				t.Fatalf("the session ended with %v, want a protocol error naming ChunkTimeout", err)
			}
			t.Logf("ended after %v: %v", took.Round(time.Millisecond), s.Err())
			if took < timeout || took > 2*timeout+time.Second {
				t.Errorf("ended %v after the last chunk, want %v..%v", took, timeout, 2*timeout+time.Second)
			}
		})
	}
}

// drainConn reads and discards what c receives until it fails.
func drainConn(c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// TestSendersRespectBounds: a conforming peer never breaks the byte
// bounds, however much it sends at once: 32 requests and 8 streams of
// messages as large as MaxMessageSize, all at once, to a session whose
// bounds hold two such messages each (so that most senders wait), and
// answers as large, all arrive whole, and neither session ends.
func TestSendersRespectBounds(t *testing.T) {
	const maxMsg = 1 << 20
	cfg := mux.Config{MaxMessageSize: maxMsg, MaxRequestBytes: 2*maxMsg + 256, MaxResponseBytes: 2 * maxMsg, MaxStreamBytes: 2*maxMsg + 256}
	reg := echoRegistry(t)
	mustStream(t, reg, hsEcho, handlers.StreamHandler{InCapacity: 8, OutCapacity: 8, Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
		for {
			msg, err := st.Recv(ctx)
			if err != nil {
				return nil
			}
			if err := st.Send(ctx, msg); err != nil {
				return err
			}
		}
	}})
	p := newPair(t, transports[1], reg, cfg, cfg)
	ctx := testCtx(t)
	big := randomBytes(maxMsg)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			got, err := p.client.Request(ctx, hEcho, big[i:])
			if err != nil || len(got) != len(big)-i {
				t.Errorf("request %d: %d bytes, %v", i, len(got), err)
			}
		})
	}
	for i := range 8 {
		wg.Go(func() {
			raw, err := p.client.OpenStream(ctx, hsEcho, big[:i*1000])
			if err != nil {
				t.Error(err)
				return
			}
			st := raw.(*mux.Stream)
			go func() {
				for range 6 {
					if err := st.Send(ctx, big); err != nil {
						t.Error(err)
						return
					}
				}
				st.CloseSend()
			}()
			n := 0
			for {
				msg, err := st.Recv()
				if err != nil {
					if err != io.EOF {
						t.Errorf("stream %d: %v", i, err)
					}
					break
				}
				if len(msg) != maxMsg {
					t.Errorf("stream %d: a message of %d bytes", i, len(msg))
				}
				n++
			}
			if n != 6 {
				t.Errorf("stream %d: %d messages echoed, want 6", i, n)
			}
		})
	}
	wg.Wait()
	if err := p.client.Err(); err != nil {
		t.Fatalf("client ended: %v", err)
	}
	if err := p.server.Err(); err != nil {
		t.Fatalf("server ended: %v", err)
	}
	waitNoStreams(t, p)
}
