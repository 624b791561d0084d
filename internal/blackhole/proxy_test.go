package blackhole_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gridmesh/gridmesh/internal/blackhole"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// timeout bounds every wait of these tests.
const timeout = 10 * time.Second

// echoServer echoes each line back until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // ends when the proxy closes its side
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line and reads it back within wait.
func roundTrip(c net.Conn, r *bufio.Reader, wait time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := r.ReadString('\n')
	return err
}

// TestBlackHole: a connection through the proxy works, goes silent (no
// error, no EOF) while the proxy is on, and works again once it is off.
func TestBlackHole(t *testing.T) {
	p, err := blackhole.Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := roundTrip(c, r, timeout); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.On()
	err = roundTrip(c, r, 300*time.Millisecond)
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("black hole: got %v, want a read timeout (the connection open and silent)", err)
	}
	p.Off()
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(c2, bufio.NewReader(c2), timeout); err != nil {
		t.Fatalf("after the black hole, a new connection: %v", err)
	}
}

// TestCloseEndsConnections: Close ends the connections it proxies, and
// is idempotent.
func TestCloseEndsConnections(t *testing.T) {
	p, err := blackhole.Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, bufio.NewReader(c), timeout); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
}

// TestLimit: a limited direction forwards at about its rate; lifting the
// limit restores full speed.
func TestLimit(t *testing.T) {
	p, err := blackhole.Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const size, rate = 100 << 10, 400 << 10 // 100 KiB at 400 KiB/s: at least 250 ms
	p.Limit(blackhole.Upstream, rate)
	msg := bytes.Repeat([]byte("x"), size)
	start := time.Now()
	go func() { _, _ = c.Write(msg) }()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 100*time.Millisecond { // 250 ms at the rate; unlimited it takes about 1 ms
		t.Fatalf("%d bytes at %d B/s took only %v", size, rate, took)
	}
	p.Limit(blackhole.Upstream, 0)
	start = time.Now()
	go func() { _, _ = c.Write(msg) }()
	if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("unlimited: %v", took)
	}
}
