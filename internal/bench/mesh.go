package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/mux"
)

// pickPair returns a random ordered pair of distinct nodes of n.
func pickPair(n int) (from, to int) {
	from = rand.IntN(n)
	to = rand.IntN(n - 1)
	if to >= from {
		to++
	}
	return from, to
}

// gridMesh is n grid nodes on loopback, each connected to every other by
// the one WebSocket the grid keeps per pair: a full mesh. Each call goes
// from a random node to another, so a connection carries few calls at a
// time and batching helps little, as in a cluster.
type gridMesh struct {
	closeOnce sync.Once
	closeErr  error
	nodes     []*grid.Manager
	srvs      []*http.Server
	conns     [][]*grid.Connection // conns[i][j]: node i's connection to node j
	serve     sync.WaitGroup
}

// NewGridMesh starts a full mesh of n grid nodes (n >= 2) serving the echo
// handlers; Call sends each request from a random node to another.
func NewGridMesh(n int) (Pair, error) {
	if n < 2 {
		return nil, errors.New("bench: a mesh needs 2 nodes or more")
	}
	lns, hosts, err := listenN(n)
	if err != nil {
		return nil, err
	}
	p := &gridMesh{}
	for i := range n {
		m, err := grid.NewManager(context.Background(), grid.Options{
			Local: hosts[i], Hosts: hosts, Secret: []byte("gridmesh bench secret"),
			Mux:            mux.Config{MaxMessageSize: MaxPayload},
			PingInterval:   time.Minute, // no ping during a measurement
			TracerProvider: TracerProvider, DisableMetrics: DisableMetrics,
		})
		if err == nil {
			err = registerEcho(m)
		}
		if err != nil {
			closeListeners(lns[i:])
			p.Close()
			return nil, err
		}
		p.nodes = append(p.nodes, m)
		routes := http.NewServeMux()
		routes.Handle(grid.DefaultRoutePath, m.Handler())
		srv := &http.Server{Handler: routes, ReadHeaderTimeout: 10 * time.Second}
		p.srvs = append(p.srvs, srv)
		ln := lns[i]
		p.serve.Go(func() { srv.Serve(ln) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	p.conns = make([][]*grid.Connection, n)
	for i, m := range p.nodes {
		p.conns[i] = make([]*grid.Connection, n)
		for j, h := range hosts {
			if i != j {
				p.conns[i][j] = m.Connection(h)
			}
		}
		if err := m.WaitForConnect(ctx); err != nil {
			p.Close()
			return nil, fmt.Errorf("bench: mesh of %d: %w", n, err)
		}
	}
	return p, nil
}

func (p *gridMesh) Call(ctx context.Context, payload []byte) ([]byte, error) {
	from, to := pickPair(len(p.nodes))
	return p.conns[from][to].Request(ctx, echoID, payload)
}

// Recycle gives a response back to the mux's buffer pool.
func (p *gridMesh) Recycle(msg []byte) { mux.Recycle(msg) }

// Close closes the nodes, then their HTTP servers. It is idempotent.
func (p *gridMesh) Close() error {
	p.closeOnce.Do(func() {
		for _, m := range p.nodes {
			p.closeErr = errors.Join(p.closeErr, m.Close())
		}
		for _, s := range p.srvs {
			p.closeErr = errors.Join(p.closeErr, s.Close())
		}
		p.serve.Wait()
	})
	return p.closeErr
}

// grpcMesh is n grpc-go echo servers on loopback and, for every ordered
// pair of nodes, a ClientConn from one to the other: the same full mesh
// in grpc-go's terms, where a connection carries calls one way.
type grpcMesh struct {
	closeOnce sync.Once
	closeErr  error
	srvs      []*grpc.Server
	served    []chan struct{}
	conns     [][]*grpc.ClientConn // conns[i][j]: node i's ClientConn to node j's server
}

// NewGRPCMesh starts n grpc-go echo servers (n >= 2) and a ClientConn per
// ordered pair; Call sends each request from a random node to another.
func NewGRPCMesh(n int) (Pair, error) {
	if n < 2 {
		return nil, errors.New("bench: a mesh needs 2 nodes or more")
	}
	p := &grpcMesh{conns: make([][]*grpc.ClientConn, n)}
	addrs := make([]string, n)
	for i := range n {
		srv, lis, served, err := startGRPCServer()
		if err != nil {
			p.Close()
			return nil, err
		}
		p.srvs, p.served, addrs[i] = append(p.srvs, srv), append(p.served, served), lis.Addr().String()
	}
	for i := range n {
		p.conns[i] = make([]*grpc.ClientConn, n)
		for j := range n {
			if i == j {
				continue
			}
			conn, err := dialGRPC(addrs[j])
			if err != nil {
				p.Close()
				return nil, err
			}
			p.conns[i][j] = conn
		}
	}
	return p, nil
}

func (p *grpcMesh) Call(ctx context.Context, payload []byte) ([]byte, error) {
	from, to := pickPair(len(p.srvs))
	var out []byte
	if err := p.conns[from][to].Invoke(ctx, echoUnaryMethod, payload, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Close closes every ClientConn, then the servers. It is idempotent.
func (p *grpcMesh) Close() error {
	p.closeOnce.Do(func() {
		for _, row := range p.conns {
			for _, c := range row {
				if c != nil {
					p.closeErr = errors.Join(p.closeErr, c.Close())
				}
			}
		}
		for i, s := range p.srvs {
			s.Stop()
			<-p.served[i]
		}
	})
	return p.closeErr
}

// listenN opens n loopback listeners at once and returns them with their
// node URLs.
func listenN(n int) ([]net.Listener, []string, error) {
	lns := make([]net.Listener, n)
	hosts := make([]string, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeListeners(lns[:i])
			return nil, nil, err
		}
		lns[i], hosts[i] = ln, "http://"+ln.Addr().String()
	}
	return lns, hosts, nil
}

func closeListeners(lns []net.Listener) {
	for _, l := range lns {
		if l != nil {
			l.Close()
		}
	}
}
