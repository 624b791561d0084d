package grid

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

var (
	hsEcho  = handlers.New(110, "grid-stream-echo")  // echoes every input message
	hsPush  = handlers.New(111, "grid-stream-push")  // pushes messages until cancelled or done
	hsBlock = handlers.New(112, "grid-stream-block") // waits for its context
	hsFail  = handlers.New(113, "grid-stream-fail")  // fails after one message
	hsWork  = handlers.New(114, "grid-stream-work")  // computes "for a long time"
)

// streamHandler registers h for id on every node.
func streamHandler(tb testing.TB, id handlers.HandlerID, h handlers.StreamHandler, nodes ...*node) {
	tb.Helper()
	for _, n := range nodes {
		must(tb, n.m.RegisterStreamHandler(id, h))
	}
}

// blocker is a stream handler that reports its start and waits for its
// context, reporting how it ended.
type blocker struct {
	started chan struct{}
	ended   chan error
}

func newBlocker(n int) *blocker {
	return &blocker{started: make(chan struct{}, n), ended: make(chan error, n)}
}

func (b *blocker) handle(ctx context.Context, _ []byte, _ <-chan []byte, _ chan<- []byte) error {
	b.started <- struct{}{}
	<-ctx.Done()
	b.ended <- ctx.Err()
	return ctx.Err()
}

// waitStarted waits for n handlers to start.
func (b *blocker) waitStarted(tb testing.TB, n int) {
	tb.Helper()
	for range n {
		select {
		case <-b.started:
		case <-time.After(testTimeout):
			tb.Fatal("stream handler did not start")
		}
	}
}

// waitEnded waits for n handlers to see their context end with want.
func (b *blocker) waitEnded(tb testing.TB, n int, want error) {
	tb.Helper()
	for range n {
		select {
		case err := <-b.ended:
			if !errors.Is(err, want) {
				tb.Fatalf("handler's context ended with %v, want %v", err, want)
			}
		case <-time.After(testTimeout):
			tb.Fatal("stream handler's context was not cancelled")
		}
	}
}

// endsWith checks that a stream's Responses ended with an error matching
// want (after any number of messages).
func endsWith(tb testing.TB, what string, st *mux.Stream, want error) {
	tb.Helper()
	rs := drain(tb, st)
	if len(rs) == 0 || !errors.Is(rs[len(rs)-1].Err, want) {
		tb.Fatalf("%s: stream ended with %+v, want %v", what, rs, want)
	}
}

// noStreamState waits until no node holds stream or request state on any
// connection: every stream ended on both sides.
func noStreamState(tb testing.TB, nodes ...*node) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		left := ""
		for _, n := range nodes {
			st := n.m.Stats()
			if st.StreamsOut != 0 || st.StreamsIn != 0 || st.Running != 0 || st.InFlight != 0 {
				left += fmt.Sprintf(" %s: out %d in %d running %d in-flight %d;", n.name, st.StreamsOut, st.StreamsIn, st.Running, st.InFlight)
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("stream state left:%s", left)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStreamNotConnected(t *testing.T) {
	_, names := listen(t, 2) // nothing serves the peer
	o := baseOptions(names[0], names)
	m, err := NewManager(context.Background(), o)
	must(t, err)
	defer m.Close()
	c := m.Connection(names[1])
	start := time.Now()
	if _, err := c.NewStream(testCtx(t), hsEcho, nil); !isDisconnected(err) {
		t.Fatalf("NewStream on a connection that is down: %v", err)
	}
	if _, err := c.OpenStream(testCtx(t), hsEcho, nil); !isDisconnected(err) {
		t.Fatalf("OpenStream on a connection that is down: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("NewStream took %v to fail; it should fail at once", d)
	}
	must(t, m.Close())
	if _, err := c.NewStream(testCtx(t), hsEcho, nil); !isClosed(err) || !isDisconnected(err) {
		t.Fatalf("NewStream after Close: %v", err)
	}
}

// TestStreamRoundTrip: capacities 1/1 reach the caller, 11 lockstep round
// trips, then closing Requests ends the handler's input and Responses.
// Both directions of the connection are used.
func TestStreamRoundTrip(t *testing.T) {
	d, a, _ := pair(t, nil)
	streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1}, d, a)
	ctx := testCtx(t)
	for _, ends := range [][2]*node{{d, a}, {a, d}} {
		from, to := ends[0], ends[1]
		st, err := from.m.Connection(to.name).NewStream(ctx, hsEcho, []byte("hello"))
		must(t, err)
		if c := from.m.Connection(to.name).Stats(); c.StreamsOut != 1 {
			t.Errorf("%s: caller's stats show %d streams out, want 1", from.name, c.StreamsOut)
		}
		if c := to.m.Connection(from.name).Stats(); c.StreamsIn != 1 {
			t.Errorf("%s: server's stats show %d streams in, want 1", to.name, c.StreamsIn)
		}
		for i := range 11 {
			msg := fmt.Appendf(nil, "%s message %d", from.name, i)
			must(t, st.Send(ctx, msg))
			if r := recvResp(t, st); r.Err != nil || !bytes.Equal(r.Msg, msg) {
				t.Fatalf("round %d: %q %v", i, r.Msg, r.Err)
			}
		}
		st.CloseSend()
		if rest := drain(t, st); len(rest) != 0 {
			t.Fatalf("after closing Requests: %+v", rest)
		}
		noStreamState(t, d, a)
	}
}

// TestStreamHandlerEnd: a handler's error is the last Response, as a
// typed remote error; a nil return closes Responses cleanly; an unknown
// handler is refused at open.
func TestStreamHandlerEnd(t *testing.T) {
	d, a, _ := pair(t, nil)
	streamHandler(t, hsFail, handlers.StreamHandler{Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		select {
		case out <- []byte("partial"):
		case <-ctx.Done():
			return ctx.Err()
		}
		return errors.New("gave up")
	}}, a)
	streamHandler(t, hsPush, handlers.StreamHandler{OutCapacity: 2, Handle: func(ctx context.Context, p []byte, _ <-chan []byte, out chan<- []byte) error {
		for i := range 3 {
			select {
			case out <- fmt.Appendf(nil, "%s%d", p, i):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}, a)
	ctx := testCtx(t)
	c := d.m.Connection(a.name)
	st, err := c.NewStream(ctx, hsFail, nil)
	must(t, err)
	rs := drain(t, st)
	var re *mux.RemoteError
	if len(rs) != 2 || string(rs[0].Msg) != "partial" || !errors.As(rs[1].Err, &re) || re.Msg != "gave up" || re.Handler != hsFail {
		t.Fatalf("failing handler: %+v", rs)
	}
	st, err = c.NewStream(ctx, hsPush, []byte("n"))
	must(t, err)
	var got []string
	must(t, st.Results(func(m []byte) error { got = append(got, string(m)); return nil }))
	if strings.Join(got, ",") != "n0,n1,n2" {
		t.Fatalf("push: %v", got)
	}
	if _, err := c.NewStream(ctx, hsEcho, nil); !errors.Is(err, mux.ErrUnknownHandler) {
		t.Fatalf("unknown handler: %v", err)
	}
	noStreamState(t, d, a)
}

func TestStreamCancel(t *testing.T) {
	cases := []struct {
		name  string
		inCap int
		fill  int // input messages sent before cancelling
	}{
		{"no-input", 0, 0},
		{"with-input", 4, 2},
		{"input-full", 4, 4},
	}
	d, a, _ := pair(t, nil)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := handlers.New(uint16(120+i), "grid-cancel-"+tc.name)
			b := newBlocker(1)
			streamHandler(t, id, handlers.StreamHandler{Handle: b.handle, InCapacity: tc.inCap}, a)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := d.m.Connection(a.name).NewStream(ctx, id, nil)
			must(t, err)
			b.waitStarted(t, 1)
			for range tc.fill {
				must(t, st.Send(testCtx(t), []byte("x")))
			}
			if tc.fill == tc.inCap && tc.inCap > 0 {
				sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				if err := st.Send(sctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("send into a full input: %v", err)
				}
				scancel()
			}
			cancel()
			rs := drain(t, st)
			if len(rs) != 1 || !errors.Is(rs[0].Err, context.Canceled) {
				t.Fatalf("after cancel: %+v", rs)
			}
			b.waitEnded(t, 1, context.Canceled)
			noStreamState(t, d, a)
		})
	}
}

func TestStreamDeadline(t *testing.T) {
	d, a, _ := pair(t, nil)
	type seen struct {
		deadline time.Time
		ok       bool
		err      error
	}
	got := make(chan seen, 1)
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, _ chan<- []byte) error {
		dl, ok := ctx.Deadline()
		<-ctx.Done()
		got <- seen{dl, ok, ctx.Err()}
		return ctx.Err()
	}}, a)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	st, err := d.m.Connection(a.name).NewStream(ctx, hsBlock, nil)
	must(t, err)
	rs := drain(t, st)
	if len(rs) != 1 || !errors.Is(rs[0].Err, context.DeadlineExceeded) {
		t.Fatalf("caller got %+v", rs)
	}
	s := <-got
	if !s.ok || !errors.Is(s.err, context.DeadlineExceeded) {
		t.Fatalf("handler saw deadline %v (set %v), err %v", s.deadline, s.ok, s.err)
	}
	off := s.deadline.Sub(start.Add(50 * time.Millisecond))
	t.Logf("handler's deadline is %v off the caller's", off)
	if off < -time.Millisecond || off > 5*time.Second {
		t.Fatalf("handler's deadline off by %v", off)
	}
	noStreamState(t, d, a)
}

// TestStreamServerOutCongestion: a handler pushes 100 messages to a caller
// that is not reading; 100 single requests on the same connection succeed
// meanwhile; then all 100 messages arrive, in order.
func TestStreamServerOutCongestion(t *testing.T) {
	d, a, _ := pair(t, nil)
	pushed := make(chan int, 1)
	streamHandler(t, hsPush, handlers.StreamHandler{OutCapacity: 1, Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		for i := range 100 {
			select {
			case out <- fmt.Appendf(nil, "%03d", i):
			case <-ctx.Done():
				return ctx.Err()
			}
			if i == 0 {
				pushed <- i // the next send blocks on credit
			}
		}
		return nil
	}}, a)
	ctx := testCtx(t)
	st, err := d.m.Connection(a.name).NewStream(ctx, hsPush, nil)
	must(t, err)
	<-pushed
	for i := range 100 {
		must(t, d.call(ctx, a.name, fmt.Sprint(i)))
	}
	for i := range 100 {
		if r := recvResp(t, st); r.Err != nil || string(r.Msg) != fmt.Sprintf("%03d", i) {
			t.Fatalf("message %d: %q %v", i, r.Msg, r.Err)
		}
	}
	if rest := drain(t, st); len(rest) != 0 {
		t.Fatalf("extra: %+v", rest)
	}
	noStreamState(t, d, a)
}

// TestStreamServerInCongestion: the handler does not read while the caller
// fills its input; 100 single requests on the same connection succeed
// meanwhile; then the handler gets all 100 messages, in order.
func TestStreamServerInCongestion(t *testing.T) {
	d, a, _ := pair(t, nil)
	release := make(chan struct{})
	received := make(chan []string, 1)
	streamHandler(t, hsBlock, handlers.StreamHandler{InCapacity: 100, Handle: func(ctx context.Context, _ []byte, in <-chan []byte, _ chan<- []byte) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		var got []string
		for m := range in {
			got = append(got, string(m))
		}
		received <- got
		return nil
	}}, a)
	ctx := testCtx(t)
	st, err := d.m.Connection(a.name).NewStream(ctx, hsBlock, nil)
	must(t, err)
	for i := range 100 {
		must(t, st.Send(ctx, fmt.Appendf(nil, "%d", i)))
	}
	sctx, scancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if err := st.Send(sctx, []byte("one too many")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send beyond the handler's input capacity: %v", err)
	}
	scancel()
	for i := range 100 {
		must(t, d.call(ctx, a.name, fmt.Sprint(i)))
	}
	close(release)
	st.CloseSend()
	if rest := drain(t, st); len(rest) != 0 {
		t.Fatalf("extra: %+v", rest)
	}
	got := <-received
	if len(got) != 100 || got[0] != "0" || got[99] != "99" {
		t.Fatalf("handler received %d messages: %v", len(got), got)
	}
	noStreamState(t, d, a)
}

func TestStreamResponseBlockedThenCancel(t *testing.T) {
	d, a, _ := pair(t, nil)
	ended := make(chan error, 1)
	streamHandler(t, hsPush, handlers.StreamHandler{OutCapacity: 2, Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		for {
			select {
			case out <- []byte("more"):
			case <-ctx.Done():
				ended <- ctx.Err()
				return ctx.Err()
			}
		}
	}}, a)
	st, err := d.m.Connection(a.name).NewStream(context.Background(), hsPush, nil)
	must(t, err)
	// The stream flows, then the handler fills its credit and blocks.
	recvResp(t, st)
	time.Sleep(50 * time.Millisecond)
	st.Cancel()
	endsWith(t, "cancelled stream", st, context.Canceled)
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler: %v", err)
	}
	noStreamState(t, d, a)
}

// TestStreamConnectionLoss: when the connection breaks, every open stream
// ends at once with ErrDisconnected on the caller's side, every handler's
// context is cancelled, and new streams work after the reconnect.
func TestStreamConnectionLoss(t *testing.T) {
	d, a, _ := pair(t, nil)
	const n = 10
	ba, bd := newBlocker(n), newBlocker(n)
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: ba.handle, InCapacity: 1}, a)
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: bd.handle, InCapacity: 1}, d)
	streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1}, a)
	ctx := testCtx(t)
	var streams []*mux.Stream
	for i := range 2 * n {
		from, to := d, a
		if i%2 == 1 {
			from, to = a, d
		}
		st, err := from.m.Connection(to.name).NewStream(ctx, hsBlock, nil)
		must(t, err)
		streams = append(streams, st)
	}
	ba.waitStarted(t, n)
	bd.waitStarted(t, n)
	if d.dialer.killAll() == 0 {
		t.Fatal("no connection to kill")
	}
	for i, st := range streams {
		select {
		case r := <-st.Responses:
			if !isDisconnected(r.Err) {
				t.Fatalf("stream %d ended with %+v, want ErrDisconnected", i, r)
			}
		case <-time.After(2 * time.Second): // well below a missed ping
			t.Fatalf("stream %d still open 2 s after the connection broke", i)
		}
		if rest := drain(t, st); len(rest) != 0 {
			t.Fatalf("stream %d: after the error: %+v", i, rest)
		}
		if err := st.Send(ctx, []byte("late")); !errors.Is(err, mux.ErrStreamEnded) {
			t.Fatalf("send on an ended stream: %v", err)
		}
	}
	ba.waitEnded(t, n, context.Canceled)
	bd.waitEnded(t, n, context.Canceled)
	noStreamState(t, d, a)

	waitFor(t, "a new session", func() bool { return d.m.Connection(a.name).Stats().Connects >= 2 })
	must(t, d.m.Connection(a.name).WaitForConnect(ctx))
	st, err := d.m.Connection(a.name).NewStream(ctx, hsEcho, nil)
	must(t, err)
	must(t, st.Send(ctx, []byte("again")))
	if r := recvResp(t, st); string(r.Msg) != "again" {
		t.Fatalf("after reconnect: %+v", r)
	}
	st.CloseSend()
	drain(t, st)
	noStreamState(t, d, a)
}

// TestStreamLimit: Options.Mux.MaxStreams bounds the streams open on a
// connection; one more is refused with ErrTooManyStreams, and the limit
// frees up as streams end.
func TestStreamLimit(t *testing.T) {
	d, a, _ := pair(t, func(o *Options) { o.Mux.MaxStreams = 2 })
	b := newBlocker(3)
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: b.handle}, a)
	c := d.m.Connection(a.name)
	ctx, cancel := context.WithCancel(testCtx(t))
	var streams []*mux.Stream
	for range 2 {
		st, err := c.NewStream(ctx, hsBlock, nil)
		must(t, err)
		streams = append(streams, st)
	}
	_, err := c.NewStream(ctx, hsBlock, nil)
	if !errors.Is(err, mux.ErrTooManyStreams) {
		t.Fatalf("third stream: %v", err)
	}
	t.Logf("third stream refused: %v", err)
	streams[0].Cancel()
	endsWith(t, "cancelled stream", streams[0], context.Canceled)
	waitFor(t, "a free stream slot", func() bool { return c.Stats().StreamsOut == 1 })
	st, err := c.NewStream(ctx, hsBlock, nil)
	must(t, err)
	streams[0] = st
	cancel()
	for _, st := range streams {
		endsWith(t, "cancelled stream", st, context.Canceled)
	}
	b.waitEnded(t, 3, context.Canceled)
	noStreamState(t, d, a)
}

// TestStreamsConcurrent runs 1,000 streams at once over one connection.
func TestStreamsConcurrent(t *testing.T) {
	d, a, _ := pair(t, nil)
	streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 2, OutCapacity: 2}, a)
	c := d.m.Connection(a.name)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			st, err := c.NewStream(ctx, hsEcho, nil)
			if err != nil {
				t.Error(err)
				return
			}
			for j := range 3 {
				msg := fmt.Appendf(nil, "%d/%d", i, j)
				if err := st.Send(ctx, msg); err != nil {
					t.Error(err)
					st.Cancel()
					drainQuiet(st)
					return
				}
				if r := <-st.Responses; r.Err != nil || !bytes.Equal(r.Msg, msg) {
					t.Errorf("%d/%d: %q %v", i, j, r.Msg, r.Err)
					st.Cancel()
					drainQuiet(st)
					return
				}
			}
			st.CloseSend()
			for r := range st.Responses {
				t.Errorf("extra %+v", r)
			}
		})
	}
	wg.Wait()
	noStreamState(t, d, a)
}

func drainQuiet(st *mux.Stream) {
	for range st.Responses {
	}
}

// TestStreamBigMessage echoes a 16 MiB message on a stream while single
// requests keep flowing on the same connection, and logs the worst
// single-request latency seen (chunks of the big message interleave with
// the small frames).
func TestStreamBigMessage(t *testing.T) {
	// Pings queue behind the big message's bytes in the sockets' buffers
	// too, and on a loaded machine under -race a pong can take longer than
	// the tests' 1 s PingTimeout: the keep-alive must take the bulk data
	// arriving as proof of life and keep the connection.
	d, a, _ := pair(t, nil)
	streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1}, a)
	c := d.m.Connection(a.name)
	ctx := testCtx(t)
	st, err := c.NewStream(ctx, hsEcho, nil)
	must(t, err)
	big := make([]byte, 16<<20)
	rand.Read(big)

	stop := make(chan struct{})
	done := make(chan struct{})
	var lat []time.Duration
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			if err := d.call(ctx, a.name, "small"); err != nil {
				t.Error(err)
				return
			}
			lat = append(lat, time.Since(start))
		}
	}()
	start := time.Now()
	must(t, st.Send(ctx, big))
	r := recvResp(t, st)
	echo := time.Since(start)
	close(stop)
	<-done
	if r.Err != nil || !bytes.Equal(r.Msg, big) {
		t.Fatalf("big echo: %d bytes, %v", len(r.Msg), r.Err)
	}
	t.Logf("16 MiB stream echo over the grid took %v; %d single requests meanwhile, latency %s", echo, len(lat), streamtest.Latencies(lat))
	if len(lat) == 0 {
		t.Error("no single request completed while the big message was in flight")
	}
	st.CloseSend()
	drain(t, st)
	noStreamState(t, d, a)
	if n := c.Stats().Connects; n != 1 {
		t.Errorf("the connection was re-established %d times during the transfer: a late pong behind bulk data was taken for a dead peer", n-1)
	}
}

// onDirs drops the data of the given directions ("upstream": dialer to
// acceptor, "downstream": acceptor to dialer) from now on.
func (b *blackhole) onDirs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		_, err := b.p.Toxics.AddToxicJson(strings.NewReader(
			`{"name":"hole_` + dir + `","type":"timeout","stream":"` + dir + `","attributes":{"timeout":0}}`))
		must(t, err)
	}
}

// liveHandlers are stream handlers that stay blocked and report how their
// context ended: push blocks on a caller that does not read, work on a
// long computation.
type liveHandlers struct{ ended chan error }

func (l *liveHandlers) push(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
	for i := 0; ; i++ {
		select {
		case out <- fmt.Appendf(nil, "%d", i):
		case <-ctx.Done():
			l.ended <- ctx.Err()
			return ctx.Err()
		}
	}
}

func (l *liveHandlers) work(ctx context.Context, _ []byte, _ <-chan []byte, _ chan<- []byte) error {
	<-ctx.Done() // computing, for as long as it takes
	l.ended <- ctx.Err()
	return ctx.Err()
}

// TestStreamLiveness: over a short ping interval, streams that are merely
// blocked (a caller that does not read, a handler computing for a long
// time) stay up for many ping intervals; once the peer vanishes (a
// blackhole that keeps the TCP connection open, both ways or one way),
// every stream is torn down on both sides within about PingInterval +
// PingTimeout, and no state is left.
func TestStreamLiveness(t *testing.T) {
	modes := []struct {
		name string
		dirs []string
	}{
		{"two-way", []string{"upstream", "downstream"}},
		{"one-way-to-acceptor", []string{"upstream"}},
		{"one-way-to-dialer", []string{"downstream"}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) { livenessTrial(t, mode.dirs) })
	}
}

func livenessTrial(t *testing.T, dirs []string) {
	// A generous timeout: a pong delayed by a busy machine must not be
	// taken for a vanished peer. Blocked streams stay up for 12 pings.
	const interval, timeout = 200 * time.Millisecond, time.Second
	const alive = 2 * (interval + timeout)
	d, a, hole := blackholedPair(t, func(_ bool, o *Options) {
		o.PingInterval, o.PingTimeout = interval, timeout
		o.HandshakeTimeout = 2 * time.Second
	})
	nodes := []*node{d, a}
	lives := make([]*liveHandlers, 2)
	for i, n := range nodes {
		lives[i] = &liveHandlers{ended: make(chan error, 4)}
		streamHandler(t, hsPush, handlers.StreamHandler{Handle: lives[i].push, OutCapacity: 1}, n)
		streamHandler(t, hsWork, handlers.StreamHandler{Handle: lives[i].work}, n)
		streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1}, n)
	}
	ctx := testCtx(t)

	// Both ways: a stream whose caller stops reading, and one whose handler
	// computes without sending.
	type open struct {
		what string
		st   *mux.Stream
	}
	var streams []open
	for _, ends := range [][2]*node{{d, a}, {a, d}} {
		c := ends[0].m.Connection(ends[1].name)
		push, err := c.NewStream(ctx, hsPush, nil)
		must(t, err)
		recvResp(t, push)
		work, err := c.NewStream(ctx, hsWork, nil)
		must(t, err)
		streams = append(streams, open{ends[0].name + " push", push}, open{ends[0].name + " work", work})
	}
	time.Sleep(alive)
	for _, o := range streams {
		select {
		case <-o.st.Done():
			t.Fatalf("%s: a blocked stream ended while its peer was alive", o.what)
		default:
		}
	}
	for i, l := range lives {
		select {
		case err := <-l.ended:
			t.Fatalf("%s: a handler's context ended while its peer was alive: %v", nodes[i].name, err)
		default:
		}
	}
	for _, n := range nodes {
		if st := n.m.Stats(); st.Reconnects != 0 || st.StreamsOut != 2 || st.StreamsIn != 2 {
			t.Fatalf("%s after %v blocked: reconnects %d, streams out %d in %d", n.name, alive, st.Reconnects, st.StreamsOut, st.StreamsIn)
		}
	}
	for _, o := range streams[:1] {
		if r := recvResp(t, o.st); r.Err != nil {
			t.Fatalf("%s: the blocked stream does not flow again: %v", o.what, r.Err)
		}
	}

	hole.onDirs(t, dirs...)
	start := time.Now()
	var worst time.Duration
	for _, o := range streams {
		endsWith(t, o.what, o.st, ErrDisconnected)
		worst = max(worst, time.Since(start))
	}
	for i, l := range lives {
		for range 2 {
			select {
			case err := <-l.ended:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("%s: handler's context ended with %v", nodes[i].name, err)
				}
			case <-time.After(testTimeout):
				t.Fatalf("%s: handler's context not cancelled after the peer vanished", nodes[i].name)
			}
		}
	}
	handlersEnded := time.Since(start)
	t.Logf("blackhole %v: callers' streams ended after %v, handlers' contexts by %v (ping %v + %v)", dirs, worst, handlersEnded, interval, timeout)
	if limit := interval + timeout + 5*time.Second; handlersEnded > limit {
		t.Errorf("tearing the streams down took %v, want at most %v", handlersEnded, limit)
	}
	noStreamState(t, d, a)

	hole.direct.Store(true)
	for _, n := range nodes {
		must(t, n.m.WaitForConnect(ctx))
	}
	waitFor(t, "a stream after the blackhole", func() bool {
		st, err := d.m.Connection(a.name).NewStream(ctx, hsEcho, nil)
		if err != nil {
			return false
		}
		defer func() { st.CloseSend(); drainQuiet(st) }()
		if st.Send(ctx, []byte("back")) != nil {
			return false
		}
		r := <-st.Responses
		return string(r.Msg) == "back"
	})
	noStreamState(t, d, a)
	for _, n := range nodes {
		n.stop()
	}
}

// TestTypedStreamOverGrid: a Connection is a handlers.StreamOpener, so
// typed stream handlers work over the grid.
func TestTypedStreamOverGrid(t *testing.T) {
	d, a, _ := pair(t, nil)
	hsTyped := handlers.New(115, "grid-stream-typed")
	ts := handlers.NewTypedStream(hsTyped,
		func() *handlers.Text { return new(handlers.Text) },
		func() *handlers.Text { return new(handlers.Text) },
		func() *handlers.Text { return new(handlers.Text) })
	for _, n := range []*node{d, a} {
		must(t, ts.Register(n.m.Registry(), 2, 2, func(ctx context.Context, p *handlers.Text, in *handlers.In[*handlers.Text], out *handlers.Out[*handlers.Text]) error {
			host, _ := PeerFromContext(ctx)
			for {
				req, err := in.Recv(ctx)
				if err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := out.Send(ctx, &handlers.Text{Value: p.Value + req.Value + " from " + host}); err != nil {
					return err
				}
			}
		}))
	}
	ctx := testCtx(t)
	for _, ends := range [][2]*node{{d, a}, {a, d}} {
		c, err := ts.Open(ctx, ends[0].m.Connection(ends[1].name), &handlers.Text{Value: "re: "})
		must(t, err)
		must(t, c.Send(ctx, &handlers.Text{Value: "hi"}))
		got, err := c.Recv()
		must(t, err)
		if want := "re: hi from " + ends[0].name; got.Value != want {
			t.Fatalf("got %q, want %q", got.Value, want)
		}
		c.CloseSend()
		if _, err := c.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after CloseSend: %v", err)
		}
	}
	noStreamState(t, d, a)
}

// recvResp and drain read a stream's Responses within testTimeout.
func recvResp(tb testing.TB, st *mux.Stream) mux.Response {
	tb.Helper()
	return streamtest.Next(tb, st, testTimeout)
}

func drain(tb testing.TB, st *mux.Stream) []mux.Response {
	tb.Helper()
	return streamtest.Drain(tb, st, testTimeout)
}
