package mux

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// rawPeer plays the peer of a session with frames of its own making, and
// records the frames the session sends it.
type rawPeer struct {
	t    *testing.T
	s    *Session
	conn net.Conn

	mu     sync.Mutex
	frames []Header
	acks   []uint64
	traces [][]byte      // the payloads of OpTrace frames
	done   chan struct{} // closed when the session's side closed
}

// newRawPeer starts a session serving reg and says hello to it as a peer
// speaking version.
func newRawPeer(t *testing.T, reg *handlers.Registry, version uint8) *rawPeer {
	t.Helper()
	return newRawPeerConfig(t, reg, version, Config{CloseTimeout: 100 * time.Millisecond})
}

// newRawPeerConfig is newRawPeer with the session's Config.
func newRawPeerConfig(t *testing.T, reg *handlers.Registry, version uint8, cfg Config) *rawPeer {
	t.Helper()
	a, b := net.Pipe()
	s, err := NewSession(a, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{t: t, s: s, conn: b, done: make(chan struct{})}
	t.Cleanup(func() {
		b.Close()
		s.Close()
		<-p.done
	})
	go p.read()
	hl := hello{Version: version, MaxMessageSize: 1 << 20, MaxConcurrent: 64, MaxStreams: 64}
	p.send(Header{Op: OpHello}, hl.append(nil))
	return p
}

func (p *rawPeer) read() {
	defer close(p.done)
	var hdr [HeaderSize]byte
	for {
		if _, err := io.ReadFull(p.conn, hdr[:]); err != nil {
			return
		}
		h, err := ParseHeader(hdr[:])
		if err != nil {
			p.t.Errorf("the session sent a bad header: %v", err)
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(p.conn, payload); err != nil {
			return
		}
		p.mu.Lock()
		p.frames = append(p.frames, h)
		if h.Op == OpAck && len(payload) == ackSize {
			p.acks = append(p.acks, binary.BigEndian.Uint64(payload))
		}
		if h.Op == OpTrace {
			p.traces = append(p.traces, payload)
		}
		p.mu.Unlock()
	}
}

// send writes one frame; it returns once the session has read it (net.Pipe).
func (p *rawPeer) send(h Header, payload []byte) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.conn.Write(AppendFrame(nil, h, payload)); err != nil {
		p.t.Fatalf("send %v: %v", h.Op, err)
	}
}

func (p *rawPeer) received() (frames []Header, acks []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Header(nil), p.frames...), append([]uint64(nil), p.acks...)
}

// ended waits for the session to end and returns why.
func (p *rawPeer) ended() error {
	p.t.Helper()
	select {
	case <-p.s.Done():
		return p.s.Err()
	case <-time.After(10 * time.Second):
		p.t.Fatal("the session did not end")
		return nil
	}
}

// pingFor sends the session enough pings, padded, for it to have read n
// bytes, spread over more than one ackInterval.
func (p *rawPeer) pingFor(n int) {
	pad := make([]byte, 32<<10)
	for i := 0; i*len(pad) < n; i++ {
		p.send(Header{Op: OpPing, ID: uint64(i + 1)}, pad)
		time.Sleep(ackInterval / 4)
	}
}

// TestAckVersions: a session acknowledges what it read to a version 2
// peer (never more than the peer wrote, never going back), and sends a
// version 1 peer no OpAck at all; an OpAck from a version 1 peer breaks
// the protocol.
func TestAckVersions(t *testing.T) {
	const n = 512 << 10
	t.Run("v2", func(t *testing.T) {
		p := newRawPeer(t, nil, 2)
		p.pingFor(n)
		_, acks := p.received()
		if len(acks) < 2 {
			t.Fatalf("%d acks for %d bytes read over %v", len(acks), n, time.Duration(n/(32<<10))*ackInterval/4)
		}
		for i, a := range acks {
			if a > uint64(n)+1<<20 || a < ackBytes || i > 0 && a < acks[i-1] {
				t.Fatalf("acks %v", acks)
			}
		}
		t.Logf("%d acks for %d bytes read: %v", len(acks), n, acks)
	})
	t.Run("v1", func(t *testing.T) {
		p := newRawPeer(t, nil, 1)
		p.pingFor(n)
		frames, acks := p.received()
		if len(acks) != 0 {
			t.Fatalf("a version 1 peer was sent %d acks", len(acks))
		}
		if len(frames) < n/(32<<10) { // hello and the pongs
			t.Fatalf("only %d frames received", len(frames))
		}
		var b [8]byte
		p.send(Header{Op: OpAck}, b[:])
		if err := p.ended(); !errors.Is(err, ErrProtocol) {
			t.Fatalf("ack from a version 1 peer: session ended with %v, want ErrProtocol", err)
		}
	})
}

// TestAckMalformed: an OpAck of the wrong size, one that goes back, and
// one beyond what the session wrote each break the protocol.
func TestAckMalformed(t *testing.T) {
	ack := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	for _, tc := range []struct {
		name string
		acks [][]byte
	}{
		{"short", [][]byte{ack(1)[:4]}},
		{"long", [][]byte{append(ack(1), 0)}},
		{"back", [][]byte{ack(20), ack(10)}},
		{"beyond sent", [][]byte{ack(1 << 40)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newRawPeer(t, nil, 2)
			<-p.s.Ready()
			for _, a := range tc.acks {
				p.send(Header{Op: OpAck}, a)
			}
			if err := p.ended(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("session ended with %v, want ErrProtocol", err)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		p := newRawPeer(t, nil, 2)
		<-p.s.Ready()
		p.send(Header{Op: OpAck}, ack(10))
		p.send(Header{Op: OpAck}, ack(10))
		p.send(Header{Op: OpAck}, ack(20))
		p.send(Header{Op: OpPing, ID: 1}, nil) // read after the acks
		deadline := time.Now().Add(10 * time.Second)
		for p.s.Stats().PeerRead != 20 {
			if time.Now().After(deadline) || p.s.Err() != nil {
				t.Fatalf("PeerRead %d, session error %v", p.s.Stats().PeerRead, p.s.Err())
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// slowConn reads at most chunk bytes per read, pausing before each.
type slowConn struct {
	net.Conn
	chunk int
	pause time.Duration
}

func (c *slowConn) Read(b []byte) (int, error) {
	time.Sleep(c.pause)
	return c.Conn.Read(b[:min(len(b), c.chunk)])
}

// TestAckWhileReadingSlowly: a peer that reads a large request slowly
// answers a ping only after the request, but its acknowledgements keep
// coming meanwhile: PeerRead grows on the caller's side while the pong
// is late.
func TestAckWhileReadingSlowly(t *testing.T) {
	hSink := handlers.New(42, "sink")
	reg := new(handlers.Registry)
	if err := reg.RegisterSingle(hSink, func(context.Context, []byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	c, err := NewSession(a, nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(&slowConn{Conn: b, chunk: 8 << 10, pause: 2 * time.Millisecond}, reg, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil { // both hellos are in
		t.Fatal(err)
	}

	var answered atomic.Bool
	reqDone := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, hSink, make([]byte, 1<<20)) // about 250 ms to read
		answered.Store(true)
		reqDone <- err
	}()
	time.Sleep(20 * time.Millisecond) // the request is on its way
	pingDone := make(chan time.Duration, 1)
	go func() {
		rtt, _ := c.Ping(ctx)
		pingDone <- rtt
	}()
	var seen []uint64
	for !answered.Load() {
		if r := c.Stats().PeerRead; len(seen) == 0 || r != seen[len(seen)-1] {
			seen = append(seen, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-reqDone; err != nil {
		t.Fatal(err)
	}
	rtt := <-pingDone
	t.Logf("pong after %v; PeerRead meanwhile: %v", rtt, seen)
	if len(seen) < 3 {
		t.Fatalf("PeerRead took %d values while the peer read 1 MiB slowly, want at least 3: %v", len(seen), seen)
	}
	if st := c.Stats(); st.PeerRead > st.BytesOut {
		t.Fatalf("PeerRead %d exceeds BytesOut %d", st.PeerRead, st.BytesOut)
	}
}
