package mux_test

import (
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

var (
	hEcho    = handlers.New(1, "echo")
	hFail    = handlers.New(2, "fail")
	hPanic   = handlers.New(3, "panic")
	hBlock   = handlers.New(4, "block")
	hInspect = handlers.New(5, "inspect")
	hMissing = handlers.New(99, "missing")
)

// transport makes a connected pair of pipes.
type transport struct {
	name string
	pair func(tb testing.TB) (net.Conn, net.Conn)
}

var transports = []transport{
	{"pipe", func(testing.TB) (net.Conn, net.Conn) { return net.Pipe() }},
	{"tcp", tcpPair},
}

func tcpPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return a, r.c
}

// forEachTransport runs f once per transport as a subtest.
func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

// pair is a client session and a server session connected by a transport.
type pair struct {
	client, server         *mux.Session
	clientConn, serverConn net.Conn
}

func newPair(tb testing.TB, tr transport, reg *handlers.Registry, ccfg, scfg mux.Config) *pair {
	tb.Helper()
	a, b := tr.pair(tb)
	c, err := mux.NewSession(a, nil, ccfg)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := mux.NewSession(b, reg, scfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.Close()
		s.Close()
	})
	return &pair{client: c, server: s, clientConn: a, serverConn: b}
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

func mustRegister(tb testing.TB, reg *handlers.Registry, id handlers.HandlerID, h handlers.SingleHandler) {
	tb.Helper()
	if err := reg.RegisterSingle(id, h); err != nil {
		tb.Fatal(err)
	}
}

func echoRegistry(tb testing.TB) *handlers.Registry {
	reg := new(handlers.Registry)
	mustRegister(tb, reg, hEcho, func(_ context.Context, p []byte) ([]byte, error) { return p, nil })
	return reg
}

// recv receives from ch within testTimeout.
func recv[T any](tb testing.TB, ch <-chan T) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		tb.Fatal("nothing received within the test timeout")
		var zero T
		return zero
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func waitFor(tb testing.TB, ch <-chan struct{}) {
	tb.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		tb.Fatal("timed out")
	}
}
