package grid

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"syscall"
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
// connection: the WebSocket library hijacks the accepted socket itself.
type tuningWriter struct {
	http.ResponseWriter
	limit int
}

func (w tuningWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		tuneConn(c, w.limit)
	}
	return c, brw, err
}

func (w tuningWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
