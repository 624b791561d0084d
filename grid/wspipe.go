package grid

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/coder/websocket"

	"github.com/gridmesh/gridmesh/mux"
)

// wsPipe is the byte pipe a mux session runs over: one WebSocket, each mux
// write one binary message, the messages read back to back as one stream.
// It calls the WebSocket with context.Background(), which costs nothing
// per message (a context that can end makes the library arm and disarm a
// watcher on every frame); Close, which drops the TCP connection, is what
// ends a blocked Read or Write.
//
// Close drops the connection without the WebSocket closing handshake: the
// mux has already told the peer why it closes, and the handshake would
// wait up to seconds for a silent peer.
type wsPipe struct {
	ws   *websocket.Conn
	cork *corkConn // the connection under ws; nil if it is not known
	r    io.Reader // the message being read; only Read touches it
}

// wsReadSlack is what a WebSocket message may hold beyond one mux write.
const wsReadSlack = 64 << 10

func newWSPipe(ws *websocket.Conn, cork *corkConn) *wsPipe {
	ws.SetReadLimit(mux.MaxWriteSize + wsReadSlack)
	return &wsPipe{ws: ws, cork: cork}
}

// Read reads the next bytes of the current message, or of the next one.
// A peer's normal closure reads as io.EOF.
func (p *wsPipe) Read(b []byte) (int, error) {
	for {
		if p.r == nil {
			typ, r, err := p.ws.Reader(context.Background())
			if err != nil {
				switch websocket.CloseStatus(err) {
				case websocket.StatusNormalClosure, websocket.StatusGoingAway:
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.MessageBinary {
				p.ws.CloseNow()
				return 0, fmt.Errorf("grid: %v WebSocket message from the peer, want binary", typ)
			}
			p.r = r
		}
		n, err := p.r.Read(b)
		if err == io.EOF {
			p.r = nil
			if n == 0 {
				continue // the message ended (or was empty): read the next
			}
			err = nil
		}
		return n, err
	}
}

// Write sends b as one binary message, corking the connection under it so
// that the message leaves in one system call however the WebSocket
// library buffers it.
func (p *wsPipe) Write(b []byte) (int, error) {
	if p.cork != nil {
		p.cork.setCork()
	}
	err := p.ws.Write(context.Background(), websocket.MessageBinary, b)
	if p.cork != nil {
		if ferr := p.cork.uncork(); err == nil {
			err = ferr
		}
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close drops the connection at once.
func (p *wsPipe) Close() error { return p.ws.CloseNow() }

// corkConn is the connection under a WebSocket (TCP, or TLS over TCP).
// The WebSocket library reads and writes it through 4 KiB buffers, so a
// 60 KiB batch of mux frames would cost 15 system calls each way, and the
// per-call cost of a loopback or LAN socket is most of what a busy node
// spends.
//
// Writes: while corked, they gather in a pooled buffer, and uncork writes
// them in one call; at most corkLimit bytes gather before they are
// written. Reads: once a read has filled the caller's buffer, more is
// likely waiting, so the next small read fills a pooled read-ahead buffer
// with as much as the socket holds, up to readAhead bytes, and the reads
// after it are served from there. Both buffers go back to their pools once
// empty, and a read that finds the socket drained waits without one, so an
// idle connection holds neither, with one exception: when the data ended
// exactly where a read's buffer did, the next read cannot tell and waits
// holding the read-ahead buffer (64 KiB, until the next message).
type corkConn struct {
	net.Conn
	mu     sync.Mutex // held across the socket write, as the writes must stay in order
	corked bool
	buf    *[]byte

	// Read-ahead, used only by the WebSocket's reader, which reads under
	// a lock of its own.
	rbuf  *[]byte // nil when empty
	rpos  int
	burst bool // the last socket read filled its buffer
}

// readAhead is the most a read fills the read-ahead buffer with.
const readAhead = 64 << 10

var readAheadBufs = sync.Pool{New: func() any { b := make([]byte, readAhead); return &b }}

func (c *corkConn) Read(b []byte) (int, error) {
	if c.rbuf == nil {
		if !c.burst || len(b) >= readAhead/2 {
			// Straight into b: the socket may be drained (and the read
			// wait), or b is large enough.
			n, err := c.Conn.Read(b)
			c.burst = n == len(b)
			return n, err
		}
		c.rbuf = readAheadBufs.Get().(*[]byte)
		*c.rbuf = (*c.rbuf)[:readAhead]
		n, err := c.Conn.Read(*c.rbuf)
		c.burst = n == readAhead
		if n == 0 {
			readAheadBufs.Put(c.rbuf)
			c.rbuf = nil
			return 0, err
		}
		*c.rbuf, c.rpos = (*c.rbuf)[:n], 0 // an error comes again at the next read
	}
	n := copy(b, (*c.rbuf)[c.rpos:])
	c.rpos += n
	if c.rpos == len(*c.rbuf) {
		readAheadBufs.Put(c.rbuf)
		c.rbuf = nil
	}
	return n, nil
}

// corkLimit bounds the bytes a corked connection gathers.
const corkLimit = 128 << 10

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, corkLimit); return &b }}

func (c *corkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(b)
	}
	if c.buf == nil {
		c.buf = corkBufs.Get().(*[]byte)
	}
	if len(*c.buf)+len(b) > corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(b) > corkLimit/2 {
			return c.Conn.Write(b) // as large as a gathering is worth
		}
	}
	*c.buf = append(*c.buf, b...)
	return len(b), nil
}

// setCork makes writes gather until uncork.
func (c *corkConn) setCork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what gathered and returns the buffer to its pool.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if c.buf == nil {
		return nil
	}
	err := c.flushLocked()
	corkBufs.Put(c.buf)
	c.buf = nil
	return err
}

func (c *corkConn) flushLocked() error {
	if c.buf == nil || len(*c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

// NetConn returns the connection under c, as tls.Conn's does. The grid
// sets its socket options before wrapping; tests read them through it.
func (c *corkConn) NetConn() net.Conn { return c.Conn }
