package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testTimeout = 30 * time.Second

var pairs = []struct {
	name string
	new  func() (Pair, error)
}{
	{"Mux", NewMux},
	{"GRPCUnary", NewGRPCUnary},
	{"RawWS", NewRawWS},
	{"MuxBidi", NewMuxBidi},
	{"GRPCBidi", NewGRPCBidi},
	{"RawWSBidi", NewRawWSBidi},
	{"Grid", NewGrid},
	{"GridBidi", NewGridBidi},
	{"GridMesh4", func() (Pair, error) { return NewGridMesh(4) }},
	{"GRPCMesh4", func() (Pair, error) { return NewGRPCMesh(4) }},
}

var streamers = []struct {
	name string
	new  func() (Streamer, error)
}{
	{"Mux", NewMuxStream},
	{"GRPC", NewGRPCStream},
	{"Grid", NewGridStream},
}

func payloadOf(n, seed int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + seed)
	}
	return p
}

func TestPairEcho(t *testing.T) {
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			p, err := pc.new()
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()

			sizes := []int{0, 17, 1 << 20}
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for g := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 6 {
						size := sizes[(g+i)%len(sizes)]
						if size == 1<<20 && g%4 != 0 {
							size = 4096 // keep 1 MiB traffic moderate under -race
						}
						want := payloadOf(size, g+i)
						got, err := p.Call(ctx, want)
						if err != nil {
							errs <- err
							return
						}
						if !bytes.Equal(got, want) {
							errs <- fmt.Errorf("goroutine %d call %d: echo of %d bytes differs (got %d bytes)", g, i, size, len(got))
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestPairClose(t *testing.T) {
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			p, err := pc.new()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()

			// Callers loop until their calls fail because of Close.
			var wg sync.WaitGroup
			started := make(chan struct{}, 32)
			for g := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					payload := payloadOf(64<<10, g)
					for i := 0; ; i++ {
						if _, err := p.Call(ctx, payload); err != nil {
							if ctx.Err() != nil {
								t.Errorf("call not failed by Close before the test timeout: %v", err)
							}
							return
						}
						if i == 0 {
							started <- struct{}{}
						}
					}
				}()
			}
			for range 32 {
				select {
				case <-started:
				case <-ctx.Done():
					t.Fatal("callers did not start")
				}
			}
			closed := make(chan error, 1)
			go func() { closed <- p.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("Close hung")
			}
			wg.Wait()
			if _, err := p.Call(ctx, []byte("after close")); err == nil {
				t.Error("Call after Close succeeded")
			}
			if err := p.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestRawWSCancel(t *testing.T) {
	p, err := NewRawWS()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Call(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Call with a cancelled context = %v, want context.Canceled", err)
	}
	// Calls cancelled while in flight must neither hang nor disturb others.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i*g)*time.Microsecond)
				got, err := p.Call(ctx, []byte("maybe"))
				cancel()
				if err == nil && string(got) != "maybe" {
					t.Errorf("got %q", got)
				}
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("unexpected error %v", err)
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel = context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	got, err := p.Call(ctx, []byte("after cancel"))
	if err != nil || string(got) != "after cancel" {
		t.Fatalf("Call after cancelled call = %q, %v", got, err)
	}
	if _, err := p.Call(ctx, make([]byte, MaxPayload+1)); err == nil {
		t.Error("oversized payload accepted")
	}
}

func TestStream(t *testing.T) {
	for _, sc := range streamers {
		t.Run(sc.name, func(t *testing.T) {
			s, err := sc.new()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()

			st, err := s.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				want := payloadOf(17*i, i)
				if err := st.Send(want); err != nil {
					t.Fatalf("Send %d: %v", i, err)
				}
				got, err := st.Recv()
				if err != nil {
					t.Fatalf("Recv %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("echo %d differs", i)
				}
			}
			if err := st.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("Recv after CloseSend = %v, want io.EOF", err)
			}
			r, err := Run(ctx, StreamCaller(s, 10), Load{PayloadSize: 512, Callers: 8, Ops: 200})
			if err != nil || r.Ops != 200 {
				t.Fatalf("streams run: %v, %v", r, err)
			}
			r, err = RunLongStream(ctx, s, 512, 50*time.Millisecond)
			if err != nil || r.Ops == 0 || r.OpsPerSec <= 0 {
				t.Fatalf("long stream: %v, %v", r, err)
			}
		})
	}
}

func TestStreamClose(t *testing.T) {
	for _, sc := range streamers {
		t.Run(sc.name, func(t *testing.T) {
			s, err := sc.new()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			st, err := s.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err == nil {
				t.Fatal("Recv on a closed Streamer succeeded")
			}
			if _, err := s.OpenStream(ctx); err == nil {
				t.Fatal("OpenStream after Close succeeded")
			}
		})
	}
}

// TestIdleMemory checks that the memory measurements run and give
// plausible figures.
func TestIdleMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, pc := range pairs[:3] {
		per, err := IdleConnBytes(ctx, pc.new, 16) // enough that GC noise cannot hide them
		if err != nil {
			t.Fatalf("%s: %v", pc.name, err)
		}
		if per <= 0 || per > 10<<20 {
			t.Errorf("%s: %.0f bytes per idle connection", pc.name, per)
		}
	}
	per, err := IdleGridConnBytes(ctx, 16)
	if err != nil {
		t.Fatalf("grid: %v", err)
	}
	if per <= 0 || per > 10<<20 {
		t.Errorf("grid: %.0f bytes per idle connection", per)
	}
	for _, sc := range streamers {
		s, err := sc.new()
		if err != nil {
			t.Fatal(err)
		}
		per, err := IdleStreamBytes(ctx, s, 1000) // enough that GC noise cannot hide them
		s.Close()
		if err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		if per <= 0 || per > 10<<20 {
			t.Errorf("%s: %.0f bytes per idle stream", sc.name, per)
		}
	}
}

func TestRun(t *testing.T) {
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			p, err := pc.new()
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()

			r, err := Run(ctx, p, Load{PayloadSize: 512, Callers: 8, Ops: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if r.Ops != 1000 || r.OpsPerSec <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
				t.Fatalf("ops run: %+v", r)
			}
			if r.RunqP99 <= 0 {
				t.Errorf("ops run: no run-queue wait recorded for 1000 calls from 8 goroutines: %+v", r)
			}
			r, err = Run(ctx, p, Load{PayloadSize: 64, Callers: 4, Duration: 100 * time.Millisecond, Samples: 64})
			if err != nil {
				t.Fatal(err)
			}
			if r.Ops == 0 || r.Duration < 100*time.Millisecond || r.P99 < r.P50 {
				t.Fatalf("duration run: %+v", r)
			}
			t.Log(r)
		})
	}
}

func TestRunErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Run(ctx, nil, Load{Ops: 1}); err == nil {
		t.Error("Callers 0 accepted")
	}
	if _, err := Run(ctx, nil, Load{Callers: 1}); err == nil {
		t.Error("Load without Ops or Duration accepted")
	}
	want := errors.New("boom")
	_, err := Run(ctx, callerFunc(func(context.Context, []byte) ([]byte, error) { return nil, want }),
		Load{Callers: 4, Ops: 100})
	if !errors.Is(err, want) {
		t.Errorf("Run error = %v, want %v", err, want)
	}
}

type callerFunc func(context.Context, []byte) ([]byte, error)

func (f callerFunc) Call(ctx context.Context, p []byte) ([]byte, error) { return f(ctx, p) }

// TestMeshSpreads: a mesh's calls go from every node to every other.
func TestMeshSpreads(t *testing.T) {
	p, err := NewGridMesh(4)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := Run(context.Background(), p, Load{PayloadSize: 64, Callers: 8, Ops: 2000}); err != nil {
		t.Fatal(err)
	}
	for i, m := range p.(*gridMesh).nodes {
		for host, st := range m.Stats().Peers {
			if st.RequestsOut == 0 || st.Served == 0 {
				t.Errorf("node %d and %s: %d requests sent, %d served", i, host, st.RequestsOut, st.Served)
			}
		}
	}
	if _, err := NewGridMesh(1); err == nil {
		t.Error("a mesh of one node")
	}
}

// TestInlineEcho: with InlineEcho set, the echo runs inline on the grid
// nodes and on mux sessions alike; without it, on workers.
func TestInlineEcho(t *testing.T) {
	defer func(was bool) { InlineEcho = was }(InlineEcho)
	for _, inline := range []bool{false, true} {
		InlineEcho = inline
		mesh, err := NewGridMesh(3)
		if err != nil {
			InlineEcho = false
			t.Fatal(err)
		}
		mp, err := NewMux()
		InlineEcho = false
		if err != nil {
			mesh.Close()
			t.Fatal(err)
		}
		for _, p := range []Pair{mesh, mp} {
			if _, err := Run(context.Background(), p, Load{PayloadSize: 64, Callers: 4, Ops: 300}); err != nil {
				t.Fatal(err)
			}
		}
		var served, inlined uint64
		for _, m := range mesh.(*gridMesh).nodes {
			st := m.Stats()
			served, inlined = served+st.Served, inlined+st.ServedInline
		}
		mst := mp.(*muxPair).server.Stats()
		served, inlined = served+mst.Served, inlined+mst.ServedInline
		mesh.Close()
		mp.Close()
		want := uint64(0)
		if inline {
			want = served
		}
		if served < 600 || inlined != want {
			t.Fatalf("InlineEcho %v: %d served, %d of them inline", inline, served, inlined)
		}
	}
}
