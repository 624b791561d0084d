package grid

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"syscall"
	"time"
)

// DefaultUnsentLimit is the default of Options.UnsentLimit.
const DefaultUnsentLimit = 128 << 10

// tuneConn limits how much written-but-unsent data the kernel may hold for
// c (TCP_NOTSENT_LOWAT on Linux), when c is a TCP connection, possibly
// under TLS. Without it a loopback or LAN socket buffer grows to several
// MiB, and a small request queued behind a large message waits for all of
// it however well the mux interleaves its frames. Errors are ignored: the
// limit is an optimisation.
func tuneConn(c net.Conn, limit int) {
	if limit <= 0 {
		return
	}
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) { setUnsentLimit(fd, limit) })
}

// tuningWriter is an http.ResponseWriter whose Hijack tunes the hijacked
// connection and puts a corkConn over it: the WebSocket library hijacks
// the accepted socket itself. cork is set once Hijack has run. Any answer
// but the upgrade closes the connection (WriteHeader).
type tuningWriter struct {
	http.ResponseWriter
	limit int
	cork  *corkConn
}

// WriteHeader makes the server close the connection after any answer but
// 101 Switching Protocols: the WebSocket library refuses a bad upgrade
// request with a header of its own (Connection: Upgrade), which would
// otherwise keep the connection open for the next request.
func (w *tuningWriter) WriteHeader(code int) {
	if code != http.StatusSwitchingProtocols {
		w.Header().Set("Connection", "close")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *tuningWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The server's ReadTimeout and WriteTimeout set deadlines on the
	// connection for the request; they must not end the session. net/http
	// clears them when it hands the connection over, and so do we, for
	// servers that would not.
	c.SetDeadline(time.Time{})
	tuneConn(c, w.limit)
	w.cork = &corkConn{Conn: c}
	// The writer is empty (net/http flushed the 101 answer before the
	// hijack); it keeps its buffer and writes through the cork from now on.
	brw.Writer.Reset(w.cork)
	return w.cork, brw, nil
}

func (w *tuningWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
