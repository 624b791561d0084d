package testcluster

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
)

// links keeps the TCP connections the cluster's nodes dial, so that a
// test can cut the one between two nodes as a network fault would: both
// ends see their connection fail, and the grid dials again.
type links struct {
	mu      sync.Mutex
	conns   []link
	blocked map[[2]string]bool // host pairs, in both orders, whose dials fail
}

type link struct {
	from, to string // the dialer's host:port and the dialed one
	conn     net.Conn
}

// dialer returns a grid.Options.NetDial for the node at local (a URL)
// that records what it dials.
func (l *links) dialer(local string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	from := hostOf(local)
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		l.mu.Lock()
		blocked := l.blocked[[2]string{from, addr}]
		l.mu.Unlock()
		if blocked {
			return nil, fmt.Errorf("testcluster: the link from %s to %s is blocked", from, addr)
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		kept := l.conns[:0]
		for _, k := range l.conns {
			if !closed(k.conn) {
				kept = append(kept, k)
			}
		}
		l.conns = append(kept, link{from: from, to: addr, conn: c})
		l.mu.Unlock()
		return c, nil
	}
}

// cut closes every connection either node dialed to the other, and
// returns how many it closed.
func (l *links) cut(a, b string) int {
	a, b = hostOf(a), hostOf(b)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	kept := l.conns[:0]
	for _, k := range l.conns {
		if (k.from == a && k.to == b) || (k.from == b && k.to == a) {
			_ = k.conn.Close()
			n++
			continue
		}
		kept = append(kept, k)
	}
	l.conns = kept
	return n
}

// block makes dials between a and b fail (on), or succeed again.
func (l *links) block(a, b string, on bool) {
	a, b = hostOf(a), hostOf(b)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.blocked == nil {
		l.blocked = make(map[[2]string]bool)
	}
	l.blocked[[2]string{a, b}], l.blocked[[2]string{b, a}] = on, on
}

// closed reports whether c was closed here (a read on it would fail at
// once); connections are dropped from the list only when cut, or when a
// later dial finds them closed by their node.
func closed(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return true
	}
	return raw.Control(func(uintptr) {}) != nil
}

func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Host
}
