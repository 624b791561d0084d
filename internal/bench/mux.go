package bench

import (
	"context"
	"net"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// echoID is the handler the gridmesh pairs serve.
const echoID handlers.HandlerID = 1

// muxPair is two gridmesh mux sessions over one TCP loopback connection;
// the server side echoes.
type muxPair struct {
	client, server *mux.Session
}

// NewMux returns a Pair of gridmesh mux sessions over TCP loopback; the
// server side serves the echo handler.
func NewMux() (Pair, error) {
	p, err := newMuxPair()
	if err != nil {
		return nil, err
	}
	return p, nil
}

// newMuxPair connects a client session to a server session that serves
// echoRegistry.
func newMuxPair() (*muxPair, error) {
	reg, err := echoRegistry()
	if err != nil {
		return nil, err
	}
	client, server, err := newMuxSessions(nil, reg)
	if err != nil {
		return nil, err
	}
	return &muxPair{client: client, server: server}, nil
}

func (p *muxPair) Call(ctx context.Context, payload []byte) ([]byte, error) {
	return p.client.Request(ctx, echoID, payload)
}

// Recycle gives a response back to the mux's buffer pool.
func (p *muxPair) Recycle(msg []byte) { mux.Recycle(msg) }

func (p *muxPair) Close() error {
	p.client.Close()
	return p.server.Close()
}

// tcpConnPair returns both ends of one TCP loopback connection.
func tcpConnPair() (net.Conn, net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	select {
	case b := <-accepted:
		return a, b, nil
	case err := <-errc:
		a.Close()
		return nil, nil, err
	}
}
