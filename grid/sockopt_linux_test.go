package grid

import (
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// unsentLimit reads TCP_NOTSENT_LOWAT back from c.
func unsentLimit(t testing.TB, c net.Conn) int {
	t.Helper()
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = u.NetConn() // the corkConn over the socket
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	must(t, err)
	var v int
	var gerr error
	must(t, raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) }))
	must(t, gerr)
	return v
}

// TestUnsentLimit: both the sockets a node dials and those it accepts
// carry the unsent-bytes limit.
func TestUnsentLimit(t *testing.T) {
	d, _, _ := pair(t, nil)
	d.dialer.mu.Lock()
	conns := append([]net.Conn(nil), d.dialer.conns...)
	d.dialer.mu.Unlock()
	if len(conns) == 0 {
		t.Fatal("the dialer dialed nothing")
	}
	if got := unsentLimit(t, conns[0]); got != DefaultUnsentLimit {
		t.Errorf("dialed socket: TCP_NOTSENT_LOWAT %d, want %d", got, DefaultUnsentLimit)
	}

	accepted := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := (&tuningWriter{ResponseWriter: w, limit: 4096}).Hijack()
		if err != nil {
			accepted <- -1
			return
		}
		accepted <- unsentLimit(t, c)
		c.Close()
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
	}
	if got := <-accepted; got != 4096 {
		t.Errorf("hijacked socket: TCP_NOTSENT_LOWAT %d, want 4096", got)
	}
}
