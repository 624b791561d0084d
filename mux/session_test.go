package mux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestRoundTripSizes(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		p := newPair(t, tr, echoRegistry(t), mux.Config{}, mux.Config{})
		for _, n := range []int{0, 17, 64 << 10, 64<<10 + 1, 1 << 20, 16 << 20} {
			want := randomBytes(n)
			got, err := p.client.Request(testCtx(t), hEcho, want)
			if err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%d bytes: echo differs (got %d bytes)", n, len(got))
			}
		}
	})
}

func TestOverMaxRequest(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		// The server accepts at most 1 KiB: the client refuses before sending.
		p := newPair(t, tr, echoRegistry(t), mux.Config{}, mux.Config{MaxMessageSize: 1024})
		_, err := p.client.Request(testCtx(t), hEcho, make([]byte, 1025))
		if !errors.Is(err, mux.ErrMessageTooLarge) {
			t.Fatalf("got %v, want ErrMessageTooLarge", err)
		}
		if _, err := p.client.Request(testCtx(t), hEcho, make([]byte, 1024)); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
	})
}

func TestOverMaxResponse(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := new(handlers.Registry)
		mustRegister(t, reg, hEcho, func(context.Context, []byte) ([]byte, error) { return make([]byte, 2048), nil })
		// The client accepts at most 1 KiB: the server answers with an error.
		p := newPair(t, tr, reg, mux.Config{MaxMessageSize: 1024}, mux.Config{})
		_, err := p.client.Request(testCtx(t), hEcho, nil)
		var re *mux.RemoteError
		if !errors.As(err, &re) || !errors.Is(err, mux.ErrMessageTooLarge) {
			t.Fatalf("got %v, want a RemoteError matching ErrMessageTooLarge", err)
		}
		if p.client.Err() != nil || p.server.Err() != nil {
			t.Fatalf("session ended: %v / %v", p.client.Err(), p.server.Err())
		}
	})
}

func TestRemoteErrorPanicUnknown(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		reg := echoRegistry(t)
		mustRegister(t, reg, hFail, func(context.Context, []byte) ([]byte, error) {
			return nil, errors.New("disk full")
		})
		mustRegister(t, reg, hPanic, func(context.Context, []byte) ([]byte, error) { panic("boom") })
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx := testCtx(t)

		_, err := p.client.Request(ctx, hFail, nil)
		var re *mux.RemoteError
		if !errors.As(err, &re) || re.Msg != "disk full" || re.Handler != hFail {
			t.Fatalf("handler error: got %#v (%v)", re, err)
		}

		_, err = p.client.Request(ctx, hPanic, nil)
		if !errors.Is(err, mux.ErrHandlerPanic) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("panic: got %v", err)
		}

		_, err = p.client.Request(ctx, hMissing, nil)
		if !errors.Is(err, mux.ErrUnknownHandler) || !strings.Contains(err.Error(), "missing(99)") {
			t.Fatalf("unknown handler: got %v", err)
		}

		// The session survived all three.
		if got, err := p.client.Request(ctx, hEcho, []byte("still here")); err != nil || string(got) != "still here" {
			t.Fatalf("after errors: %q, %v", got, err)
		}
	})
}

func TestInvalidHandlerID(t *testing.T) {
	p := newPair(t, transports[0], echoRegistry(t), mux.Config{}, mux.Config{})
	if _, err := p.client.Request(testCtx(t), 0, nil); !errors.Is(err, mux.ErrInvalidHandler) {
		t.Fatalf("got %v", err)
	}
}

func TestCancelReachesHandler(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		started := make(chan struct{})
		seen := make(chan error, 1)
		reg := new(handlers.Registry)
		mustRegister(t, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
			close(started)
			select {
			case <-ctx.Done():
				seen <- ctx.Err()
			case <-time.After(testTimeout):
				seen <- errors.New("not cancelled")
			}
			return nil, ctx.Err()
		})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := p.client.Request(ctx, hBlock, nil)
			errc <- err
		}()
		waitFor(t, started)
		cancel()
		if err := recv(t, errc); !errors.Is(err, context.Canceled) {
			t.Fatalf("caller: got %v", err)
		}
		select {
		case err := <-seen:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("handler saw %v", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("handler was not cancelled")
		}
		waitIdle(t, p)
	})
}

func TestDeadlineReachesHandler(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		type seen struct {
			deadline time.Time
			ok       bool
			err      error
		}
		got := make(chan seen, 1)
		reg := new(handlers.Registry)
		mustRegister(t, reg, hInspect, func(ctx context.Context, _ []byte) ([]byte, error) {
			d, ok := ctx.Deadline()
			<-ctx.Done()
			got <- seen{d, ok, ctx.Err()}
			return nil, ctx.Err()
		})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		const wait = 300 * time.Millisecond
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, err := p.client.Request(ctx, hInspect, nil)
		// Local expiry or the remote's answer at its deadline: both match.
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("caller: got %v", err)
		}
		s := <-got
		if !s.ok {
			t.Fatal("handler context has no deadline")
		}
		// The deadline travels as remaining milliseconds, so it can only be
		// later than the caller's by the transit time (and rounding).
		if d := s.deadline.Sub(start.Add(wait)); d < -time.Millisecond || d > 2*time.Second {
			t.Fatalf("handler deadline off by %v", d)
		}
		if !errors.Is(s.err, context.DeadlineExceeded) {
			t.Fatalf("handler saw %v, want DeadlineExceeded", s.err)
		}
		waitIdle(t, p)
	})
}

func TestConcurrentRequests(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		p := newPair(t, tr, echoRegistry(t), mux.Config{}, mux.Config{})
		const n = 10000
		ctx := testCtx(t)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				want := fmt.Appendf(nil, "request %d %s", i, strings.Repeat("x", i%300))
				got, err := p.client.Request(ctx, hEcho, want)
				if err == nil && !bytes.Equal(got, want) {
					err = fmt.Errorf("request %d: got %q", i, got)
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if st := p.server.Stats(); st.Served != n {
			t.Fatalf("served %d, want %d", st.Served, n)
		}
	})
}

func TestBothDirections(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		a, b := tr.pair(t)
		regA, regB := echoRegistry(t), echoRegistry(t)
		sa, _ := mux.NewSession(a, regA, mux.Config{})
		sb, _ := mux.NewSession(b, regB, mux.Config{})
		defer sa.Close()
		defer sb.Close()
		ctx := testCtx(t)
		var wg sync.WaitGroup
		for i := range 200 {
			s := sa
			if i%2 == 1 {
				s = sb
			}
			wg.Go(func() {
				msg := fmt.Appendf(nil, "%d", i)
				if got, err := s.Request(ctx, hEcho, msg); err != nil || !bytes.Equal(got, msg) {
					t.Errorf("request %d: %q %v", i, got, err)
				}
			})
		}
		wg.Wait()
	})
}

func TestPipeKilledMidFlight(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		release := make(chan struct{})
		var started sync.WaitGroup
		const n = 50
		started.Add(n)
		reg := new(handlers.Registry)
		mustRegister(t, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
			started.Done()
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		defer close(release)
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := p.client.Request(context.Background(), hBlock, nil)
				errs <- err
			}()
		}
		started.Wait()
		p.clientConn.Close() // the pipe breaks under both sessions
		for range n {
			select {
			case err := <-errs:
				if !errors.Is(err, mux.ErrDisconnected) {
					t.Fatalf("got %v, want ErrDisconnected", err)
				}
			case <-time.After(testTimeout):
				t.Fatal("a caller did not return after the pipe broke")
			}
		}
		// A request on the ended session fails at once.
		if _, err := p.client.Request(testCtx(t), hBlock, nil); !errors.Is(err, mux.ErrDisconnected) {
			t.Fatalf("after close: got %v", err)
		}
		<-p.server.Done()
		if !errors.Is(p.server.Err(), mux.ErrDisconnected) {
			t.Fatalf("server: %v", p.server.Err())
		}
	})
}

func TestCloseFailsInFlightAndTellsPeer(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		started := make(chan struct{})
		reg := new(handlers.Registry)
		mustRegister(t, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})
		p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
		errc := make(chan error, 1)
		go func() {
			_, err := p.client.Request(context.Background(), hBlock, nil)
			errc <- err
		}()
		waitFor(t, started)
		p.server.Close() // cancels the handler, tells the client
		if err := recv(t, errc); !errors.Is(err, mux.ErrDisconnected) {
			t.Fatalf("caller got %v", err)
		}
		<-p.client.Done()
		if err := p.client.Err(); !errors.Is(err, mux.ErrDisconnected) || !strings.Contains(err.Error(), "peer closed") {
			t.Fatalf("client err %v", err)
		}
	})
}

func TestPing(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		p := newPair(t, tr, nil, mux.Config{}, mux.Config{})
		rtt, err := p.client.Ping(testCtx(t))
		if err != nil || rtt <= 0 {
			t.Fatalf("ping: %v %v", rtt, err)
		}
		p.server.Close()
		<-p.client.Done()
		if _, err := p.client.Ping(testCtx(t)); !errors.Is(err, mux.ErrDisconnected) {
			t.Fatalf("ping after close: %v", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []mux.Config{{MaxMessageSize: -1}, {MaxMessageSize: 2 << 30}, {MaxInFlight: -5}, {HelloTimeout: -time.Second}} {
		a, b := transports[0].pair(t)
		_, err := mux.NewSession(a, nil, cfg)
		if err == nil || !strings.Contains(err.Error(), "mux: config:") {
			t.Fatalf("%+v: got %v", cfg, err)
		}
		a.Close()
		b.Close()
	}
}

func TestHelloTimeout(t *testing.T) {
	a, b := transports[0].pair(t)
	defer b.Close()
	go func() { // read and discard, never answer
		buf := make([]byte, 1024)
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
		}
	}()
	s, err := mux.NewSession(a, nil, mux.Config{HelloTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitFor(t, s.Done())
	if !errors.Is(s.Err(), mux.ErrProtocol) || !strings.Contains(s.Err().Error(), "no hello") {
		t.Fatalf("got %v", s.Err())
	}
}

func waitFor(tb testing.TB, ch <-chan struct{}) {
	tb.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		tb.Fatal("timed out")
	}
}

// waitIdle waits until neither side has requests or handlers left.
func waitIdle(tb testing.TB, p *pair) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		c, s := p.client.Stats(), p.server.Stats()
		if c.InFlight == 0 && s.Running == 0 && s.InFlight == 0 && c.Running == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not idle: client %+v server %+v", c, s)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRequestRecycleAllocs checks the allocations of a round trip whose
// caller recycles the response: one, the handler's context. Without
// Recycle there are two (the response is a second).
func TestRequestRecycleAllocs(t *testing.T) {
	if mux.RaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	p := newPair(t, transports[1], echoRegistry(t), mux.Config{}, mux.Config{})
	ctx := context.Background() // no deadline: a deadline costs a timer per request
	payload := make([]byte, 512)
	call := func() {
		resp, err := p.client.Request(ctx, hEcho, payload)
		if err != nil || len(resp) != len(payload) {
			t.Fatalf("echo: %d bytes, %v", len(resp), err)
		}
		mux.Recycle(resp)
	}
	for range 100 {
		call() // warm the pools and the worker
	}
	if n := testing.AllocsPerRun(500, call); n > 1.2 {
		t.Fatalf("%.2f allocations per recycled round trip, want 1", n)
	}
}

// TestStatsAdd sets every field of two Stats to distinct values and checks
// that Add sums each one, so that a field added later cannot be left out.
func TestStatsAdd(t *testing.T) {
	var a, b mux.Stats
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range va.NumField() {
		switch va.Field(i).Kind() {
		case reflect.Int:
			va.Field(i).SetInt(int64(i + 1))
			vb.Field(i).SetInt(int64(100 * (i + 1)))
		case reflect.Uint64:
			va.Field(i).SetUint(uint64(i + 1))
			vb.Field(i).SetUint(uint64(100 * (i + 1)))
		default:
			t.Fatalf("field %s of kind %v: teach this test and Add about it", va.Type().Field(i).Name, va.Field(i).Kind())
		}
	}
	sum := reflect.ValueOf(a.Add(b))
	for i := range sum.NumField() {
		var got int64
		if f := sum.Field(i); f.Kind() == reflect.Int {
			got = f.Int()
		} else {
			got = int64(f.Uint())
		}
		if want := int64(101 * (i + 1)); got != want {
			t.Errorf("%s: %d, want %d", sum.Type().Field(i).Name, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (mux.Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	for _, c := range []mux.Config{{MaxMessageSize: -1}, {MaxMessageSize: 1<<30 + 1}, {MaxStreams: -1}, {CloseTimeout: -time.Second}} {
		err := c.Validate()
		if err == nil {
			t.Fatalf("%+v accepted", c)
		}
		if _, serr := mux.NewSession(nil, nil, c); serr == nil || serr.Error() != err.Error() {
			t.Fatalf("Validate says %v, NewSession %v", err, serr)
		}
	}
}

// TestUnanswered: a request counts as unanswered from the moment its
// handler starts until its answer is queued, so a node that waits for 0
// before closing loses no answer.
func TestUnanswered(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	reg := new(handlers.Registry)
	mustRegister(t, reg, hBlock, func(ctx context.Context, p []byte) ([]byte, error) {
		started <- struct{}{}
		<-release
		return p, nil
	})
	p := newPair(t, transports[1], reg, mux.Config{}, mux.Config{})
	done := make(chan error, 1)
	go func() {
		_, err := p.client.Request(testCtx(t), hBlock, []byte("x"))
		done <- err
	}()
	waitFor(t, started)
	if st := p.server.Stats(); st.Unanswered != 1 || st.Running != 1 {
		t.Fatalf("handler running: unanswered %d, running %d; want 1 and 1", st.Unanswered, st.Running)
	}
	close(release)
	if err := recv(t, done); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for p.server.Stats().Unanswered != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("answered, but still counted unanswered: %+v", p.server.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if st := p.server.Stats(); st.Served != 1 {
		t.Fatalf("served %d, want 1", st.Served)
	}
}

// TestCloseFailsOwnCalls: a caller whose own session is closed gets
// ErrDisconnected, never the peer's answer to the cancellation that the
// close caused. The peer's handlers answer at once when cancelled, so if
// the peer were told before local calls and streams were failed, its
// answer could win.
func TestCloseFailsOwnCalls(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		for i := range 50 {
			started := make(chan struct{})
			bh := newBlocking()
			reg := new(handlers.Registry)
			mustRegister(t, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
				close(started)
				<-ctx.Done()
				return nil, ctx.Err()
			})
			mustStream(t, reg, hsBlock, handlers.StreamHandler{Handle: bh.handle})
			p := newPair(t, tr, reg, mux.Config{}, mux.Config{})
			errc := make(chan error, 1)
			go func() {
				_, err := p.client.Request(context.Background(), hBlock, nil)
				errc <- err
			}()
			st, err := p.client.NewStream(context.Background(), hsBlock, nil)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, started)
			waitFor(t, bh.started)
			// Close waits (up to CloseTimeout) for the stream's last
			// Response to be taken, so it is taken meanwhile.
			last := make(chan []mux.Response, 1)
			go func() { last <- waitClosed(t, st) }()
			p.client.Close()
			if err := recv(t, errc); !errors.Is(err, mux.ErrDisconnected) {
				t.Fatalf("round %d: caller got %v", i, err)
			}
			if rs := recv(t, last); len(rs) != 1 || !errors.Is(rs[0].Err, mux.ErrDisconnected) {
				t.Fatalf("round %d: stream ended with %+v", i, rs)
			}
			p.server.Close()
		}
	})
}

// breakingConn is a connection whose writes, once broken, read what they
// are given (as a buffered writer would) and then fail.
type breakingConn struct {
	net.Conn
	broken atomic.Bool
	sum    atomic.Uint64 // what the broken writes read, so that the reads stay
}

func (c *breakingConn) Write(b []byte) (int, error) {
	if !c.broken.Load() {
		return c.Conn.Write(b)
	}
	var sum uint64
	for _, x := range b {
		sum += uint64(x)
	}
	c.sum.Add(sum)
	time.Sleep(time.Millisecond) // a slow failure, while answers still queue
	return 0, errors.New("broken")
}

// TestWriteErrorWithAnswersQueued: when a write fails, the handlers that
// the failure cancels queue their answers, and the writer may take and
// try to write them before it sees the session closing. It must not be
// handed the buffer that the senders go on filling. The race detector
// catches that; CI caught it first, in internal/bench's TestIdleMemory.
func TestWriteErrorWithAnswersQueued(t *testing.T) {
	const n = 64
	for round := range 20 {
		running := make(chan struct{}, n)
		reg := echoRegistry(t)
		mustRegister(t, reg, hBlock, func(ctx context.Context, _ []byte) ([]byte, error) {
			running <- struct{}{}
			<-ctx.Done()
			return make([]byte, 512), nil
		})
		a, b := tcpPair(t)
		bc := &breakingConn{Conn: b}
		c, err := mux.NewSession(a, nil, mux.Config{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := mux.NewSession(bc, reg, mux.Config{})
		if err != nil {
			t.Fatal(err)
		}
		// A burst of answers first, so that the writer's buffers have
		// room for the answers to come without growing.
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if _, err := c.Request(testCtx(t), hEcho, make([]byte, 4096)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := c.Request(testCtx(t), hBlock, nil)
				errs <- err
			}()
		}
		for range n {
			select {
			case <-running:
			case <-time.After(testTimeout):
				t.Fatal("handlers not running")
			}
		}
		bc.broken.Store(true)
		if _, err := s.Ping(testCtx(t)); !errors.Is(err, mux.ErrDisconnected) {
			t.Fatalf("round %d: ping over a broken pipe: %v", round, err)
		}
		s.Close()
		b.Close()
		for range n {
			if err := recv(t, errs); !errors.Is(err, mux.ErrDisconnected) {
				t.Fatalf("round %d: caller got %v", round, err)
			}
		}
		c.Close()
	}
}
