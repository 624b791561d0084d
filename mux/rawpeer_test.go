package mux_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// rawPeer speaks mux frames by hand over a real connection, as a hostile
// (but authenticated: mux trusts whoever holds the pipe) peer would: it
// sends whatever frames it is told to, and reads the session's frames only
// while its reader runs.
type rawPeer struct {
	c    net.Conn
	mu   sync.Mutex // bw
	bw   *bufio.Writer
	zero []byte // payload bytes, never written to

	peerHello []byte // the session's hello payload
}

// rawHello is the payload of a hello announcing the given limits and,
// unless bounds is false, byte bounds (MaxRequestBytes, MaxResponseBytes,
// MaxStreamBytes, StreamReserve) too large to matter.
func rawHello(maxMsg, maxConcurrent, maxStreams uint32, bounds bool) []byte {
	p := make([]byte, 20, 48)
	copy(p, "GMUX")
	p[4] = mux.Version
	binary.BigEndian.PutUint32(p[8:], maxMsg)
	binary.BigEndian.PutUint32(p[12:], maxConcurrent)
	binary.BigEndian.PutUint32(p[16:], maxStreams)
	if bounds {
		p = binary.BigEndian.AppendUint64(p, 1<<40)
		p = binary.BigEndian.AppendUint64(p, 1<<40)
		p = binary.BigEndian.AppendUint64(p, 1<<40)
		p = binary.BigEndian.AppendUint32(p, 64<<10)
	}
	return p
}

// newRawPeer starts a session with reg and cfg on one end of a TCP
// connection and a raw peer on the other, exchanges hellos, and returns
// both.
func newRawPeer(tb testing.TB, reg *handlers.Registry, cfg mux.Config) (*mux.Session, *rawPeer, net.Conn) {
	tb.Helper()
	a, b := tcpPair(tb)
	s, err := mux.NewSession(a, reg, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		b.Close()
		s.Close()
	})
	p := &rawPeer{c: b, bw: bufio.NewWriterSize(b, 64<<10), zero: make([]byte, 1<<20)}
	p.send(mux.Header{Op: mux.OpHello}, rawHello(1<<30, 1<<20, 1<<20, true))
	p.flush()
	h, payload, err := readFrame(b)
	if err != nil || h.Op != mux.OpHello {
		tb.Fatalf("the session's hello: %v %v", h.Op, err)
	}
	p.peerHello = payload
	waitFor(tb, s.Ready())
	return s, p, a
}

// sendN queues a frame whose payload is n bytes of zeros.
func (p *rawPeer) sendN(h mux.Header, n int) { p.send(h, p.zero[:n]) }

// send queues a frame (written on flush, or when the buffer fills).
func (p *rawPeer) send(h mux.Header, payload []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var hdr [mux.HeaderSize]byte
	b := mux.AppendFrame(hdr[:0], h, nil)
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload))) // the length field
	_, _ = p.bw.Write(b)
	_, _ = p.bw.Write(payload)
}

func (p *rawPeer) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bw.Flush()
}

// chunks sends a message of n bytes as h.Op frames, in chunks if it is
// larger than a frame; if unfinished, the last chunk is left out (the
// message stays unfinished).
func (p *rawPeer) chunks(h mux.Header, n int, unfinished bool) {
	for seq := uint32(0); ; seq++ {
		fh := h
		fh.Seq = seq
		if seq > 0 {
			fh.Handler, fh.Deadline = 0, 0
		}
		if n > mux.MaxFramePayload {
			fh.Flags |= mux.FlagMore
			p.sendN(fh, mux.MaxFramePayload)
			n -= mux.MaxFramePayload
			continue
		}
		if !unfinished {
			p.sendN(fh, n)
		}
		return
	}
}

// readFrame reads one frame from r.
func readFrame(r io.Reader) (mux.Header, []byte, error) {
	var hdr [mux.HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return mux.Header{}, nil, err
	}
	h, err := mux.ParseHeader(hdr[:])
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(r, p)
	return h, p, err
}
