package grid

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// writeRecorder is a net.Conn that records each Write call.
type writeRecorder struct {
	net.Conn // nil: only Write is used
	mu       sync.Mutex
	writes   [][]byte
	err      error
}

func (w *writeRecorder) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(b))
	return len(b), nil
}

func (w *writeRecorder) joined() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Join(w.writes, nil)
}

func TestCorkConn(t *testing.T) {
	rec := &writeRecorder{}
	c := &corkConn{Conn: rec}
	var want []byte
	write := func(b []byte) {
		t.Helper()
		if n, err := c.Write(b); n != len(b) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
		want = append(want, b...)
	}

	write([]byte("uncorked")) // passes straight through
	if len(rec.writes) != 1 {
		t.Fatalf("%d writes before corking, want 1", len(rec.writes))
	}

	// Many small writes while corked leave in one.
	c.setCork()
	for i := range 40 {
		write(bytes.Repeat([]byte{byte(i)}, 4096))
		if i == 31 && len(rec.writes) != 1 { // 128 KiB gathered, the limit
			t.Fatalf("corked writes reached the socket: %d writes", len(rec.writes)-1)
		}
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 3 { // 160 KiB: one full gathering of 128 KiB, then the rest
		t.Fatalf("%d writes for 160 KiB corked, want 2 after the first", len(rec.writes)-1)
	}
	if c.buf != nil {
		t.Fatal("the gathering buffer was kept after uncork")
	}

	// A write larger than half the limit goes straight out, in order.
	c.setCork()
	write([]byte("head"))
	write(bytes.Repeat([]byte{'L'}, corkLimit))
	write([]byte("tail"))
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.joined(), want) {
		t.Fatal("the bytes on the socket differ from those written, or are out of order")
	}

	// An error of the gathered write surfaces at uncork.
	rec.err = errors.New("broken pipe")
	c.setCork()
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("corked Write: %v", err)
	}
	if err := c.uncork(); err == nil {
		t.Fatal("uncork hid the socket's error")
	}
}

// TestCorkConnConcurrent: writers that interleave with the corked one
// (the WebSocket library's control frames) keep their bytes whole and in
// the order of their calls.
func TestCorkConnConcurrent(t *testing.T) {
	rec := &writeRecorder{}
	c := &corkConn{Conn: rec}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if g == 0 && i%10 == 0 {
					c.setCork()
				}
				if _, err := c.Write([]byte{byte(g), byte(i)}); err != nil {
					t.Error(err)
					return
				}
				if g == 0 && i%10 == 9 {
					if err := c.uncork(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	got := rec.joined()
	if len(got) != 4*200*2 {
		t.Fatalf("%d bytes reached the socket, want %d", len(got), 4*200*2)
	}
	next := make([]int, 4)
	for i := 0; i < len(got); i += 2 {
		g, n := int(got[i]), int(got[i+1])
		if g > 3 || n != next[g] {
			t.Fatalf("writer %d's write %d out of order (want %d)", g, n, next[g])
		}
		next[g]++
	}
}

// TestGridConnectionsCorked: both ends of a grid connection write through
// a corkConn, so a mux batch leaves in one system call.
func TestGridConnectionsCorked(t *testing.T) {
	a, b, _ := pair(t, nil)
	for _, end := range []struct {
		from *node
		peer string
	}{{a, b.name}, {b, a.name}} {
		c := end.from.m.Connection(end.peer)
		c.mu.Lock()
		h := c.cur
		c.mu.Unlock()
		if h == nil || h.pipe == nil || h.pipe.cork == nil {
			t.Errorf("%s→%s: the session's WebSocket has no corkConn under it", end.from.name, end.peer)
		}
	}
}

// chunkConn is a net.Conn whose reads return its chunks one per call,
// each at most as long as asked.
type chunkConn struct {
	net.Conn
	chunks [][]byte
	reads  int
}

func (c *chunkConn) Read(b []byte) (int, error) {
	c.reads++
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// TestCorkConnReadAhead: once a small read filled its buffer, the next
// small reads are served from one large read of the socket; large reads go
// straight through; the bytes come out whole and in order, then the
// socket's error.
func TestCorkConnReadAhead(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	src := &chunkConn{chunks: [][]byte{append([]byte(nil), big[:20000]...), append([]byte(nil), big[20000:]...)}}
	c := &corkConn{Conn: src}
	var got []byte
	small := make([]byte, 4096)
	for len(got) < 20000 {
		n, err := c.Read(small)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, small[:n]...)
	}
	if src.reads != 2 { // one of 4 KiB, which filled its buffer, then one for the rest
		t.Fatalf("%d socket reads for 20,000 bytes read 4 KiB at a time, want 2", src.reads)
	}
	if c.rbuf != nil {
		t.Fatal("the read-ahead buffer was kept once empty")
	}
	large := make([]byte, readAhead)
	n, err := c.Read(large)
	if err != nil || n != len(big)-20000 {
		t.Fatalf("large read: %d, %v", n, err)
	}
	got = append(got, large[:n]...)
	if !bytes.Equal(got, big) {
		t.Fatal("the bytes read differ from those sent")
	}
	if _, err := c.Read(small); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

// TestHostilePeerMessages: an authenticated peer that sends a text message,
// or binary bytes that are no mux frames, has its session dropped with the
// reason recorded, and the node keeps accepting.
func TestHostilePeerMessages(t *testing.T) {
	lns, names := listen(t, 2)
	d, a := 0, 1 // the peer that dials, the node that accepts
	if !ShouldDial(names[0], names[1]) {
		d, a = 1, 0
	}
	lns[d].Close() // the dialing peer is played by this test
	acc := startNode(t, lns[a], baseOptions(names[a], names))
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		msg  []byte
		want string
	}{
		{"text", websocket.MessageText, []byte("hello"), "want binary"},
		{"garbage", websocket.MessageBinary, bytes.Repeat([]byte("not a mux frame "), 4), "protocol"},
	} {
		h := handshake{
			from: names[d], to: names[a], millis: time.Now().UnixMilli(),
			nonce: newID(), instance: newID(), hosts: acc.m.currentHash(),
		}
		hdr, err := h.header(acc.m.opts.Authenticator)
		must(t, err)
		ws, _, err := websocket.Dial(ctx, names[a]+DefaultRoutePath, &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			t.Fatalf("%s: dial: %v", tc.name, err)
		}
		must(t, ws.Write(ctx, tc.typ, tc.msg))
		c := acc.m.Connection(names[d])
		waitFor(t, tc.name+" to end the session", func() bool {
			return strings.Contains(c.Stats().LastError, tc.want)
		})
		ws.CloseNow()
	}
}
