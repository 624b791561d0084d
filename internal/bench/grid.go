package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/mux"
)

// gridPair is two grid nodes on loopback, each a grid.Manager mounted on
// an HTTP server of its own, joined by the one authenticated WebSocket
// connection the grid keeps between them: the path a cluster's requests
// take. Both nodes serve the echo handlers; calls go from node 0 to node 1
// unless bidi, when each picks a direction at random.
type gridPair struct {
	nodes [2]*grid.Manager
	srvs  [2]*http.Server
	conns [2]*grid.Connection // conns[i]: node i's connection to the other
	bidi  bool
	serve sync.WaitGroup // the HTTP servers' Serve loops
}

// NewGrid returns a Pair of two grid nodes over loopback WebSocket; the
// calls go through grid.Connection.Request.
func NewGrid() (Pair, error) { return newGridPair(false) }

// NewGridBidi is NewGrid with each call in a random direction, so both
// nodes call each other at once over their one connection.
func NewGridBidi() (Pair, error) { return newGridPair(true) }

// NewGridStream returns a Streamer of grid streams
// (grid.Connection.OpenStream) between two grid nodes.
func NewGridStream() (Streamer, error) { return newGridPair(false) }

func newGridPair(bidi bool) (*gridPair, error) {
	p, err := startGridPair(bidi, nil)
	if err != nil {
		return nil, err
	}
	if err := p.waitConnected(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// startGridPair starts the two nodes of a gridPair without waiting for
// their connection; dial, if not nil, is the nodes' Options.NetDial.
func startGridPair(bidi bool, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*gridPair, error) {
	p := &gridPair{bidi: bidi}
	var lns [2]net.Listener
	var hosts []string
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return nil, err
		}
		lns[i] = ln
		hosts = append(hosts, "http://"+ln.Addr().String())
	}
	for i := range p.nodes {
		m, err := grid.NewManager(context.Background(), grid.Options{
			Local: hosts[i], Hosts: hosts, Secret: []byte("gridmesh bench secret"),
			Mux: mux.Config{MaxMessageSize: MaxPayload}, NetDial: dial,
			PingInterval:   time.Minute, // no ping during a measurement
			TracerProvider: TracerProvider, DisableMetrics: DisableMetrics,
		})
		if err == nil {
			err = registerEcho(m)
		}
		if err != nil {
			for _, l := range lns[i:] {
				l.Close()
			}
			p.Close()
			return nil, err
		}
		p.nodes[i] = m
		routes := http.NewServeMux()
		routes.Handle(grid.DefaultRoutePath, m.Handler())
		p.srvs[i] = newHTTPServer(routes)
		srv, ln := p.srvs[i], lns[i]
		p.serve.Go(func() { srv.Serve(ln) })
	}
	p.conns[0], p.conns[1] = p.nodes[0].Connection(hosts[1]), p.nodes[1].Connection(hosts[0])
	return p, nil
}

// waitConnected waits for the pair's connection to be up at both ends.
func (p *gridPair) waitConnected() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range p.conns {
		if err := c.WaitForConnect(ctx); err != nil {
			return err
		}
	}
	return nil
}

// IdleGridConnBytes starts n pairs of grid nodes whose dialing is held
// back, measures, lets them connect, makes one 512-byte call on each
// connection, and returns what one idle connection holds (live heap and
// goroutine stacks, after garbage collection), counting both its ends. The
// nodes themselves (Managers, HTTP servers, listeners) are in the
// baseline: a node pays for them once, whatever its number of peers.
func IdleGridConnBytes(ctx context.Context, n int) (float64, error) {
	if n < 1 {
		return 0, errors.New("bench: IdleGridConnBytes needs n >= 1")
	}
	gate := make(chan struct{})
	held := func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	pairs := make([]*gridPair, 0, n)
	defer func() {
		for _, p := range pairs {
			p.Close()
		}
	}()
	for range n {
		p, err := startGridPair(false, held)
		if err != nil {
			return 0, err
		}
		pairs = append(pairs, p)
	}
	payload := make([]byte, 512)
	before := liveMem()
	close(gate)
	for _, p := range pairs {
		if err := p.waitConnected(); err != nil {
			return 0, err
		}
		resp, err := p.Call(ctx, payload)
		if err != nil {
			return 0, err
		}
		p.Recycle(resp)
	}
	return perItem(before, liveMem(), n), nil
}

// registerEcho registers the echo handlers on m.
func registerEcho(m *grid.Manager) error {
	reg, err := echoRegistry()
	if err != nil {
		return err
	}
	single, stream := reg.Lookup(echoID), reg.Lookup(echoStreamID)
	if single == nil || stream == nil {
		return errors.New("bench: echo handlers missing")
	}
	register := m.RegisterSingleHandler
	if single.Inline {
		register = m.RegisterInlineHandler
	}
	if err := register(echoID, single.Single); err != nil {
		return err
	}
	return m.RegisterStreamHandler(echoStreamID, *stream.Stream)
}

func (p *gridPair) Call(ctx context.Context, payload []byte) ([]byte, error) {
	c := p.conns[0]
	if p.bidi && rand.IntN(2) == 1 {
		c = p.conns[1]
	}
	return c.Request(ctx, echoID, payload)
}

// Recycle gives a response back to the mux's buffer pool.
func (p *gridPair) Recycle(msg []byte) { mux.Recycle(msg) }

// OpenStream opens a grid stream with Connection.OpenStream.
func (p *gridPair) OpenStream(ctx context.Context) (EchoStream, error) {
	st, err := p.conns[0].OpenStream(ctx, echoStreamID, nil)
	if err != nil {
		return nil, err
	}
	return &muxStream{ctx: ctx, st: st}, nil
}

// Close closes both nodes, then their HTTP servers.
func (p *gridPair) Close() error {
	var err error
	for _, m := range p.nodes {
		if m != nil {
			err = errors.Join(err, m.Close())
		}
	}
	for _, s := range p.srvs {
		if s != nil {
			err = errors.Join(err, s.Close())
		}
	}
	p.serve.Wait()
	return err
}
