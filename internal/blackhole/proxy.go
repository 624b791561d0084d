package blackhole

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards the TCP connections it accepts to one upstream address,
// and drops their bytes while it is a black hole (On).
type Proxy struct {
	ln       net.Listener
	upstream string
	// drop[Upstream] and drop[Downstream]: whether that direction's bytes
	// are dropped.
	drop [2]atomic.Bool
	// rate[dir]: bytes per second that direction forwards on each
	// connection; 0: as fast as it can.
	rate [2]atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and the copy loops
}

// Start listens on a free loopback port and forwards what it accepts to
// upstream (host:port).
func Start(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("blackhole: listen: %w", err)
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address the proxy listens on, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Direction is one way through the proxy.
type Direction int

const (
	// Upstream is from the client that connected to the proxy to the
	// upstream server.
	Upstream Direction = iota
	// Downstream is from the upstream server back to the client.
	Downstream
)

// On makes the proxy a black hole both ways: from now on, the bytes of
// every connection, open or new, are read and dropped, and no connection
// is closed. New connections are still accepted (and dialed upstream),
// as a SYN may still pass a broken path.
func (p *Proxy) On() { p.Drop(Upstream, Downstream) }

// Drop makes the proxy a black hole in the directions given, as On does
// for both; the other direction keeps its state.
func (p *Proxy) Drop(dirs ...Direction) {
	for _, d := range dirs {
		p.drop[d].Store(true)
	}
}

// Limit makes the proxy forward dir's bytes at about bytesPerSecond on
// each connection, as a slow link would; 0 lifts the limit.
func (p *Proxy) Limit(dir Direction, bytesPerSecond int) {
	p.rate[dir].Store(int64(max(bytesPerSecond, 0)))
}

// Off makes the proxy forward again both ways, on the connections still
// open and on new ones.
func (p *Proxy) Off() {
	p.drop[Upstream].Store(false)
	p.drop[Downstream].Store(false)
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = down.Close()
			continue
		}
		if !p.track(down, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(up, down, Upstream)
		go p.pipe(down, up, Downstream)
	}
}

// track registers a connection pair, or closes it if the proxy closed.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies from src to dst, dropping what it reads while dir is a
// black hole. When src ends it closes both, so the pair ends together.
func (p *Proxy) pipe(dst, src net.Conn, dir Direction) {
	defer p.wg.Done()
	defer p.forget(dst, src)
	buf := make([]byte, 32<<10)
	for {
		chunk := buf
		rate := p.rate[dir].Load()
		if rate > 0 {
			chunk = buf[:min(len(buf), max(int(rate/50), 1))] // about 20 ms a chunk
		}
		n, err := src.Read(chunk)
		if n > 0 && !p.drop[dir].Load() {
			if _, werr := dst.Write(chunk[:n]); werr != nil {
				return
			}
			if rate > 0 {
				time.Sleep(time.Duration(int64(n) * int64(time.Second) / rate))
			}
		}
		if err != nil {
			return
		}
	}
}

// forget closes and unregisters a connection pair.
func (p *Proxy) forget(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
		delete(p.conns, c)
	}
}
