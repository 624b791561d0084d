package grid

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countedConn counts itself out of open when closed.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// dialsToHungPeer starts a node whose one peer never answers, with the
// NetDial that dial returns, and waits for ten dial attempts. dial's
// argument reports how many earlier attempts are still pending (socket
// open, or dial under way); each attempt calls it when it starts. The
// attempts must not pile up: when one starts, at most two earlier ones
// may still be pending (one being torn down, with slack for a busy
// machine); without a bound they would all be.
func dialsToHungPeer(t *testing.T, scheme string, dial func(pending func() int64) func(ctx context.Context, network, addr string) (net.Conn, error), pending func() int64) {
	t.Helper()
	// Neither listener accepts: the kernel completes TCP handshakes and
	// nobody reads. The node serves nothing; its name must only make it
	// the dialing side.
	var local, remote string
	for i := 0; !ShouldDial(local, remote); i++ { // each try is a fair coin
		if i == 64 {
			t.Fatal("no pair of listeners makes the node the dialer")
		}
		lns, _ := listen(t, 2)
		local, remote = "http://"+lns[0].Addr().String(), scheme+"://"+lns[1].Addr().String()
	}
	hosts := []string{local, remote}
	var dials, most atomic.Int64
	o := baseOptions(local, hosts)
	o.HandshakeTimeout = 100 * time.Millisecond
	o.BackoffBase, o.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	o.NetDial = dial(func() int64 {
		n := pending()
		dials.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		return n
	})
	m, err := NewManager(context.Background(), o)
	must(t, err)
	defer m.Close()
	waitFor(t, "ten dial attempts", func() bool { return dials.Load() >= 10 })
	if n := most.Load(); n > 2 {
		t.Fatalf("an attempt started with %d earlier ones still pending", n)
	}
	if st := m.Connection(remote).State(); st == StateConnected {
		t.Fatalf("state %v with a hung peer", st)
	}
}

// TestDialToHungTLSPeer: a peer whose kernel accepts connections but
// whose process never answers. Each attempt's TLS handshake must end with
// the attempt, not linger (net/http runs it apart from the request) and
// keep a socket per retry.
func TestDialToHungTLSPeer(t *testing.T) {
	var open atomic.Int64
	dialsToHungPeer(t, "https", func(started func() int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			started()
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			open.Add(1)
			return &countedConn{Conn: c, open: &open}, nil
		}
	}, open.Load)
}

// TestDialThatNeverConnects: a NetDial that waits until its context ends
// (a host that drops SYNs) is bounded by HandshakeTimeout, although
// net/http gives the dial a context the request's end does not cancel.
func TestDialThatNeverConnects(t *testing.T) {
	var blocked atomic.Int64
	dialsToHungPeer(t, "http", func(started func() int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			started()
			blocked.Add(1)
			defer blocked.Add(-1)
			<-ctx.Done()
			return nil, ctx.Err()
		}
	}, blocked.Load)
}
