package mux_test

import (
	"context"
	"errors"
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
