package grid

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxPendingConns is the default of Options.MaxPendingConns when the
// process may open at least four times as many files.
const DefaultMaxPendingConns = 1024

// minPendingConns is the least default of Options.MaxPendingConns, however
// low the file limit.
const minPendingConns = 16

// defaultMaxPendingConns returns Options.MaxPendingConns's default for a
// process that may open files files (0: unknown).
func defaultMaxPendingConns(files uint64) int {
	n := DefaultMaxPendingConns
	if files > 0 && files/4 < uint64(n) {
		n = max(int(files/4), minPendingConns)
	}
	return n
}

// pendingLogEvery is how often a Node logs that it closes connections to
// make room.
const pendingLogEvery = time.Minute

// pendingConns bounds the connections a Node's HTTP server holds that are
// not grid sessions (Options.MaxPendingConns). It follows them through
// the server's ConnState hook, which net/http calls on the accepting
// goroutine for a new connection, so a connection beyond the bound is
// closed before the server reads a byte of it and the count never
// exceeds the bound once the hook returns. A connection leaves the count
// when it is hijacked (a grid session, upgraded only after its handshake
// is verified) or closed.
type pendingConns struct {
	max    int
	logger *slog.Logger

	mu         sync.Mutex
	conns      map[net.Conn]*pendingConn
	head, tail *pendingConn // in the order they arrived, oldest first
	closed     uint64       // connections closed to make room
	logged     uint64       // closed, when last logged
	lastLog    time.Time
}

// pendingConn is one connection pendingConns counts.
type pendingConn struct {
	c          net.Conn
	active     bool // a request of it is being answered
	prev, next *pendingConn
}

func newPendingConns(max int, logger *slog.Logger) *pendingConns {
	return &pendingConns{max: max, logger: logger, conns: make(map[net.Conn]*pendingConn)}
}

// connState is the http.Server's ConnState hook.
func (p *pendingConns) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		p.add(c)
	case http.StateActive, http.StateIdle:
		p.mu.Lock()
		if e := p.conns[c]; e != nil {
			e.active = st == http.StateActive
		}
		p.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		p.mu.Lock()
		if e := p.conns[c]; e != nil {
			p.removeLocked(e)
		}
		p.mu.Unlock()
	}
}

// add counts a new connection, first closing another if the bound is
// reached (victimLocked). The newcomer is always let in: shedding
// newcomers would let strangers who hold their connections keep every
// peer out, while closing old ones reaps the connections held longest.
func (p *pendingConns) add(c net.Conn) {
	p.mu.Lock()
	var victim net.Conn
	if len(p.conns) >= p.max {
		e := p.victimLocked()
		victim = e.c
		p.removeLocked(e)
		p.closed++
	}
	e := &pendingConn{c: c, prev: p.tail}
	if p.tail != nil {
		p.tail.next = e
	} else {
		p.head = e
	}
	p.tail = e
	p.conns[c] = e
	var logClosed uint64
	if victim != nil && time.Since(p.lastLog) >= pendingLogEvery {
		logClosed = p.closed - p.logged
		p.logged, p.lastLog = p.closed, time.Now()
	}
	p.mu.Unlock()
	if victim != nil {
		closeNow(victim)
	}
	if logClosed > 0 {
		p.logger.Warn("grid: too many connections not yet authenticated; closing the oldest to make room",
			"max_pending_conns", p.max, "closed", logClosed)
	}
}

// victimChecks bounds the sockets victimLocked looks into, per arrival.
const victimChecks = 32

// victimLocked returns the connection to close to make room: the oldest
// that is not being answered and has no request waiting unread in its
// socket (among the victimChecks oldest not being answered), else the
// oldest not being answered, else the oldest. A peer's handshake request
// arrives right behind its connection, so under a flood of new
// connections, whose goroutines the node runs late, its connection waits
// with the request unread: it is spared, while a stranger that sends
// nothing, or a byte now and then (read at once), is not. Once read, a
// request is being answered, and spared too.
func (p *pendingConns) victimLocked() *pendingConn {
	var oldestIdle *pendingConn
	checks := 0
	for e := p.head; e != nil && checks < victimChecks; e = e.next {
		if e.active {
			continue
		}
		if oldestIdle == nil {
			oldestIdle = e
		}
		checks++
		if unreadBytes(e.c) <= 0 {
			return e
		}
	}
	if oldestIdle != nil {
		return oldestIdle
	}
	return p.head
}

func (p *pendingConns) removeLocked(e *pendingConn) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		p.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		p.tail = e.prev
	}
	e.prev, e.next = nil, nil
	delete(p.conns, e.c)
}

// counts returns the connections counted and those closed to make room.
func (p *pendingConns) counts() (pending int, closed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns), p.closed
}

// closeNow closes c without waiting on its peer: a TLS connection's Close
// would first send an alert, and block on a peer that reads nothing.
func closeNow(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	c.Close()
}
