package grid

import (
	"context"
	"fmt"
	"time"

	"github.com/gridmesh/gridmesh/mux"
)

// keepAlive pings the peer as soon as the session is up, so that its
// round trip is known at once (not a PingInterval later), then every
// PingInterval until the session ends, is replaced, the peer is found
// dead, or the Manager closes. It returns why it stopped.
func (c *Connection) keepAlive(h *session) error {
	o := &c.m.opts
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-h.s.Done():
			return h.s.Err()
		case <-h.ctx.Done():
			return c.endReason()
		case <-t.C:
		}
		start := time.Now()
		if err := c.ping(h); err != nil {
			return err
		}
		t.Reset(max(0, o.PingInterval-time.Since(start)))
	}
}

// ping sends one ping and waits for its pong. The peer is dead once the
// pong is PingTimeout late and the peer has shown no sign of life for
// PingTimeout: no frames of its own worth progressBytes, no
// acknowledgement of having read more of ours. Bytes we write prove
// nothing: a stopped process's kernel keeps taking them. A live peer
// whose pong waits behind data (ours it is reading, or its own it is
// sending) keeps showing life, and is waited for.
//
// A peer that stops is thus found dead within PingTimeout of its last
// sign of life, or of the first ping after it: within PingInterval +
// PingTimeout, plus one look of livenessStep.
func (c *Connection) ping(h *session) error {
	o := &c.m.opts
	ctx, cancel := context.WithCancel(h.ctx)
	type pong struct {
		rtt time.Duration
		err error
	}
	pc := make(chan pong, 1)
	go func() {
		rtt, err := h.s.Ping(ctx)
		pc <- pong{rtt, err}
	}()
	answered := false
	defer func() {
		cancel()
		if !answered {
			<-pc // the Manager waits for its goroutines: this one returns at once
		}
	}()
	start := time.Now()
	look := time.NewTicker(livenessStep(o.PingTimeout))
	defer look.Stop()
	// Signs of life as seen at each look, oldest first; the first one is
	// the newest look at least PingTimeout old (or the ping's start).
	v1 := h.s.Version() < 2 // a peer that sends no acknowledgements
	window := []lifeSign{signOf(start, h.s.Stats(), v1)}
	for {
		select {
		case p := <-pc:
			answered = true
			switch {
			case h.ctx.Err() != nil:
				return c.endReason()
			case p.err != nil:
				return p.err
			}
			c.rtt.Store(int64(p.rtt))
			c.rttHist.observe(p.rtt)
			return nil
		case now := <-look.C:
			cur := signOf(now, h.s.Stats(), v1)
			for len(window) > 1 && now.Sub(window[1].at) >= o.PingTimeout {
				window = window[1:]
			}
			if now.Sub(start) >= o.PingTimeout && !cur.alive(window[0]) {
				return fmt.Errorf("%w: no pong from %s within %v, and no sign of life for as long", ErrDisconnected, c.host, o.PingTimeout)
			}
			window = append(window, cur)
		}
	}
}

// livenessStep is how often ping looks for signs of life while a pong is
// outstanding: often enough to add little to the detection time.
func livenessStep(timeout time.Duration) time.Duration {
	return max(time.Millisecond, min(timeout/10, 100*time.Millisecond))
}

// lifeSign is what a session had received from its peer at one moment,
// and, with a version 1 peer, what it had sent.
type lifeSign struct {
	at            time.Time
	in, read, out uint64 // Stats.BytesIn, Stats.PeerRead, Stats.BytesOut
	v1            bool   // the peer speaks version 1: no acknowledgements
}

func signOf(at time.Time, st mux.Stats, v1 bool) lifeSign {
	return lifeSign{at: at, in: st.BytesIn, read: st.PeerRead, out: st.BytesOut, v1: v1}
}

// progressBytes is how much the peer must have sent us since an earlier
// look to count as alive: far more than pings and acknowledgements, so
// that a peer that can reach us but not hear us is still caught.
const progressBytes = 16 << 10

// alive reports whether the peer showed life between an earlier look and
// this one: it acknowledged reading more of our bytes (it hears us), or it
// sent at least progressBytes (its pong may be queued behind them). A
// version 1 peer acknowledges nothing, so with one the old rule holds as
// well: our own bytes leaving the socket (our ping may be queued behind
// them), which cannot tell a frozen peer from a slow one.
func (s lifeSign) alive(earlier lifeSign) bool {
	return s.read > earlier.read || s.in-earlier.in >= progressBytes ||
		(s.v1 && s.out-earlier.out >= progressBytes)
}
