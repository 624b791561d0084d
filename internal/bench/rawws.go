package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Wire format of the raw WebSocket baseline: every binary WebSocket message
// carries one or more frames, each
//
//	[8-byte request id, big endian][4-byte payload length, big endian][payload]
//
// The server echoes each frame back with the same id.
const (
	frameHeaderLen = 12
	// maxBatch is the soft size limit of one WebSocket message: the writer
	// starts a new message before a frame would take it past maxBatch (a
	// single larger frame travels alone).
	maxBatch = 1 << 20
	// wsReadLimit is the largest WebSocket message either side accepts.
	wsReadLimit = frameHeaderLen + MaxPayload

	setupTimeout = 10 * time.Second
)

// NewRawWS starts a minimal multiplexer over raw github.com/coder/websocket:
// an http.Server on 127.0.0.1 accepting WebSocket connections and one client
// connection to it. Requests are request id + payload frames; each side has
// one reader goroutine and one writer goroutine that batches every frame
// queued while the previous write was in progress into a single WebSocket
// message. The server echoes each frame from its reader, without a goroutine
// per request. It is the practical floor for any multiplexer on this
// WebSocket library.
func NewRawWS() (Pair, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &wsServer{conns: make(map[*websocket.Conn]struct{})}
	s.http = newHTTPServer(s)
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		_ = s.http.Serve(lis)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	// A private transport, so that Close leaves no idle connections behind.
	tr := &http.Transport{}
	conn, _, err := websocket.Dial(ctx, "ws://"+lis.Addr().String()+"/", &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr},
	})
	tr.CloseIdleConnections()
	if err != nil {
		s.close()
		return nil, err
	}
	conn.SetReadLimit(wsReadLimit)

	c := &wsClient{
		w:       newBatchWriter(conn),
		pending: make(map[uint64]*wsCall),
		server:  s,
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.fail(c.w.run())
	}()
	go func() {
		defer c.wg.Done()
		c.fail(c.readLoop())
	}()
	return c, nil
}

// batchWriter queues frames and writes them from a single goroutine, one
// WebSocket message per batch.
type batchWriter struct {
	conn *websocket.Conn
	wake chan struct{} // capacity 1: "buf is not empty or err is set"

	mu  sync.Mutex
	buf []byte // queued frames
	err error  // set once the writer stops; queuing then fails
}

func newBatchWriter(conn *websocket.Conn) *batchWriter {
	return &batchWriter{conn: conn, wake: make(chan struct{}, 1)}
}

// appendLocked queues one frame and reports whether the writer must be
// woken. w.mu must be held and w.err must be nil.
func (w *batchWriter) appendLocked(id uint64, payload []byte) (wake bool) {
	wake = len(w.buf) == 0
	w.buf = binary.BigEndian.AppendUint64(w.buf, id)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(payload)))
	w.buf = append(w.buf, payload...)
	return wake
}

// send queues one frame.
func (w *batchWriter) send(id uint64, payload []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	wake := w.appendLocked(id, payload)
	w.mu.Unlock()
	if wake {
		w.signal()
	}
	return nil
}

func (w *batchWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// stop makes later sends fail with err and the writer goroutine return. It
// reports whether this call stopped the writer; onStop, if not nil, runs
// under w.mu when it does.
func (w *batchWriter) stop(err error, onStop func()) bool {
	w.mu.Lock()
	first := w.err == nil
	if first {
		w.err = err
		w.buf = nil
		if onStop != nil {
			onStop()
		}
	}
	w.mu.Unlock()
	w.signal()
	return first
}

// run writes batches until stop is called or a write fails; it returns the
// error that ended it.
func (w *batchWriter) run() error {
	var spare []byte
	for {
		<-w.wake
		w.mu.Lock()
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return err
		}
		out := w.buf
		w.buf = spare[:0]
		w.mu.Unlock()

		for msg := out; len(msg) > 0; {
			n := batchLen(msg)
			// A background context: an expiring write context would close
			// the connection. Close unblocks writes by closing the socket.
			if err := w.conn.Write(context.Background(), websocket.MessageBinary, msg[:n]); err != nil {
				return err
			}
			msg = msg[n:]
		}
		spare = out
	}
}

// batchLen returns the length of the longest prefix of whole frames in buf
// that fits in maxBatch, or of the first frame if it alone is larger.
func batchLen(buf []byte) int {
	n := 0
	for n < len(buf) {
		f := frameHeaderLen + int(binary.BigEndian.Uint32(buf[n+8:]))
		if n > 0 && n+f > maxBatch {
			break
		}
		n += f
	}
	return n
}

// frameReader parses frames from the WebSocket messages of one connection.
type frameReader struct {
	conn *websocket.Conn
	r    io.Reader // current message; nil between messages
	hdr  [frameHeaderLen]byte
}

// next returns the id and payload length of the next frame; its payload must
// be read from fr.r before the next call.
func (fr *frameReader) next() (id uint64, n int, err error) {
	for {
		if fr.r == nil {
			// A background context: an expiring read context would close
			// the connection. Close unblocks reads by closing the socket.
			_, fr.r, err = fr.conn.Reader(context.Background())
			if err != nil {
				return 0, 0, err
			}
		}
		_, err = io.ReadFull(fr.r, fr.hdr[:])
		if err == io.EOF {
			fr.r = nil // end of message
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		n := binary.BigEndian.Uint32(fr.hdr[8:])
		if n > MaxPayload {
			return 0, 0, fmt.Errorf("bench: frame of %d bytes exceeds MaxPayload", n)
		}
		return binary.BigEndian.Uint64(fr.hdr[:8]), int(n), nil
	}
}

// wsCall is a pending call; it is pooled.
type wsCall struct {
	done chan struct{} // capacity 1; one token once resp or err is set
	resp []byte
	err  error
}

var wsCallPool = sync.Pool{New: func() any { return &wsCall{done: make(chan struct{}, 1)} }}

// wsClient is the client side of the raw WebSocket baseline and owns the
// server.
type wsClient struct {
	w      *batchWriter // w.mu also guards pending and nextID
	server *wsServer
	wg     sync.WaitGroup

	pending map[uint64]*wsCall // nil once failed
	nextID  uint64

	closeOnce sync.Once
}

func (c *wsClient) Call(ctx context.Context, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("bench: payload of %d bytes exceeds MaxPayload", len(payload))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	call := wsCallPool.Get().(*wsCall)

	c.w.mu.Lock()
	if c.w.err != nil {
		err := c.w.err
		c.w.mu.Unlock()
		wsCallPool.Put(call)
		return nil, err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = call
	wake := c.w.appendLocked(id, payload)
	c.w.mu.Unlock()
	if wake {
		c.w.signal()
	}

	select {
	case <-call.done:
	case <-ctx.Done():
		c.w.mu.Lock()
		_, waiting := c.pending[id]
		delete(c.pending, id)
		c.w.mu.Unlock()
		if waiting {
			wsCallPool.Put(call)
			return nil, ctx.Err()
		}
		<-call.done // completed concurrently; the token is on its way
	}
	resp, err := call.resp, call.err
	call.resp, call.err = nil, nil
	wsCallPool.Put(call)
	return resp, err
}

// readLoop dispatches responses until the connection fails.
func (c *wsClient) readLoop() error {
	fr := frameReader{conn: c.w.conn}
	for {
		id, n, err := fr.next()
		if err != nil {
			return err
		}
		resp := make([]byte, n)
		if _, err := io.ReadFull(fr.r, resp); err != nil {
			return err
		}
		c.w.mu.Lock()
		call := c.pending[id]
		delete(c.pending, id)
		c.w.mu.Unlock()
		if call != nil { // nil: the call was cancelled
			call.resp = resp
			call.done <- struct{}{}
		}
	}
}

// fail stops the client: pending and later calls fail with err.
func (c *wsClient) fail(err error) {
	if err == nil {
		err = ErrClosed
	}
	err = fmt.Errorf("bench: raw websocket client: %w", err)
	var pending map[uint64]*wsCall
	if !c.w.stop(err, func() { pending, c.pending = c.pending, nil }) {
		return
	}
	for _, call := range pending {
		call.err = err
		call.done <- struct{}{}
	}
	_ = c.w.conn.CloseNow()
}

func (c *wsClient) Close() error {
	c.closeOnce.Do(func() {
		c.fail(ErrClosed)
		c.wg.Wait()
		c.server.close()
	})
	return nil
}

// wsServer accepts WebSocket connections and echoes every frame.
type wsServer struct {
	http   *http.Server
	served chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	closed bool
}

func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.CloseNow()
		return
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	conn.SetReadLimit(wsReadLimit)
	bw := newBatchWriter(conn)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		_ = bw.run()
		_ = conn.CloseNow() // unblocks the reader
	}()

	// Echo: every request frame is queued back as its own response frame.
	fr := frameReader{conn: conn}
	var payload []byte
	for {
		id, n, err := fr.next()
		if err != nil {
			break
		}
		if cap(payload) < n {
			payload = make([]byte, n)
		}
		if _, err := io.ReadFull(fr.r, payload[:n]); err != nil {
			break
		}
		if bw.send(id, payload[:n]) != nil {
			break
		}
	}
	bw.stop(ErrClosed, nil)
	<-writerDone
	_ = conn.CloseNow()

	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
}

// close stops accepting, closes every connection and waits for the server's
// goroutines.
func (s *wsServer) close() {
	_ = s.http.Close()
	<-s.served
	s.mu.Lock()
	s.closed = true
	conns := make([]*websocket.Conn, 0, len(s.conns))
	for conn := range s.conns {
		conns = append(conns, conn)
	}
	s.mu.Unlock()
	for _, conn := range conns {
		_ = conn.CloseNow()
	}
	s.wg.Wait()
}
