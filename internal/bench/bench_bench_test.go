package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
)

func BenchmarkMux(b *testing.B) { benchPair(b, NewMux) }

func BenchmarkGrid(b *testing.B) { benchPair(b, NewGrid) }

func BenchmarkGRPCUnary(b *testing.B) { benchPair(b, NewGRPCUnary) }

func BenchmarkRawWS(b *testing.B) { benchPair(b, NewRawWS) }

// BenchmarkMesh is a full mesh of N nodes in this process, 64 callers each
// sending 512 B from a random node to another (MinIO's
// BenchmarkRequests/servers=N/bytes/par=64 shape), for gridmesh and for
// grpc-go with a ClientConn per ordered pair.
func BenchmarkMesh(b *testing.B) {
	for _, n := range []int{4, 8} {
		for _, sys := range []struct {
			name string
			new  func(int) (Pair, error)
		}{{"grid", NewGridMesh}, {"grpc", NewGRPCMesh}} {
			b.Run(fmt.Sprintf("%s/servers=%d", sys.name, n), func(b *testing.B) {
				benchCaller(b, func() (Pair, error) { return sys.new(n) }, 512, 64)
			})
		}
	}
}

// benchPair runs closed-loop round trips from a fixed number of caller
// goroutines on one connection, one sub-benchmark per payload size and
// number of callers. b.N is the total number of calls; allocs/op is per
// call (both ends: client and server run in this process). Connections and
// pools are warmed by one call outside the measurement.
func benchPair(b *testing.B, newPair func() (Pair, error)) {
	for _, size := range []int{64, 512, 4096, 1 << 20} {
		for _, callers := range []int{1, 2, 16, 64, 256} {
			b.Run(fmt.Sprintf("size=%d/callers=%d", size, callers), func(b *testing.B) {
				benchCaller(b, newPair, size, callers)
			})
		}
	}
}

// runCallers runs n calls of op from callers goroutines (each taking the next
// call number) and fails b on the first error.
func runCallers(b *testing.B, callers, n int, op func() error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		ferr error
	)
	for range callers {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= n || ferr != nil {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				if err := op(); err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if ferr != nil {
		b.Fatal(ferr)
	}
}

func BenchmarkMuxBidi(b *testing.B) { benchBidi(b, NewMuxBidi) }

func BenchmarkGridBidi(b *testing.B) { benchBidi(b, NewGridBidi) }

func BenchmarkGRPCBidi(b *testing.B) { benchBidi(b, NewGRPCBidi) }

func BenchmarkRawWSBidi(b *testing.B) { benchBidi(b, NewRawWSBidi) }

// benchBidi runs 512-byte round trips between two nodes that call each
// other at once, each call in a random direction.
func benchBidi(b *testing.B, newPair func() (Pair, error)) {
	for _, callers := range []int{16, 64} {
		b.Run(fmt.Sprintf("size=512/callers=%d", callers), func(b *testing.B) {
			benchCaller(b, newPair, 512, callers)
		})
	}
}

// benchCaller runs b.N calls of size bytes from callers goroutines on a
// fresh pair.
func benchCaller(b *testing.B, newPair func() (Pair, error), size, callers int) {
	p, err := newPair()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	payload := payloadOf(size, 1)
	ctx := context.Background()
	if _, err := p.Call(ctx, payload); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	cpu0, st0, sched0 := cpuTime(), readSysStat(), readSched()
	recycle := recycler(p)
	runCallers(b, callers, b.N, func() error {
		resp, err := p.Call(ctx, payload)
		if err == nil && len(resp) != size {
			err = fmt.Errorf("response of %d bytes", len(resp))
		}
		recycle(resp)
		return err
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(runqPercentile(sched0, readSched(), 99))/1e3, "runq-p99-µs")
	st0.report(b)
}

// BenchmarkMuxStream10x512 and BenchmarkGRPCStream10x512 measure whole
// streams: open, 10 echoes of 512 B, CloseSend and the final io.EOF. b.N is
// the number of streams; ns/op and allocs/op are per stream.
func BenchmarkMuxStream10x512(b *testing.B) { benchStream10x512(b, NewMuxStream) }

func BenchmarkGridStream10x512(b *testing.B) { benchStream10x512(b, NewGridStream) }

func BenchmarkGRPCStream10x512(b *testing.B) { benchStream10x512(b, NewGRPCStream) }

func benchStream10x512(b *testing.B, newStreamer func() (Streamer, error)) {
	for _, streams := range []int{2, 8, 64} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			s, err := newStreamer()
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			payload := payloadOf(512, 1)
			ctx := context.Background()
			c := StreamCaller(s, 10)
			if _, err := c.Call(ctx, payload); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			runCallers(b, streams, b.N, func() error {
				got, err := c.Call(ctx, payload)
				if err == nil && !bytes.Equal(got, payload) {
					err = fmt.Errorf("stream answer differs")
				}
				return err
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "streams/s")
			b.ReportMetric(float64(10*b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkMuxLongStream and BenchmarkGRPCLongStream send b.N messages of
// 512 B on one stream while another goroutine receives the echoes; ns/op
// and allocs/op are per message.
func BenchmarkMuxLongStream(b *testing.B) { benchLongStream(b, NewMuxStream) }

func BenchmarkGridLongStream(b *testing.B) { benchLongStream(b, NewGridStream) }

func BenchmarkGRPCLongStream(b *testing.B) { benchLongStream(b, NewGRPCStream) }

func benchLongStream(b *testing.B, newStreamer func() (Streamer, error)) {
	s, err := newStreamer()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := s.OpenStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	payload := payloadOf(512, 1)
	recycle := recycler(st)
	b.ReportAllocs()
	b.SetBytes(512)
	b.ResetTimer()
	sent := make(chan error, 1)
	go func() {
		for range b.N {
			if err := st.Send(payload); err != nil {
				sent <- err
				return
			}
		}
		sent <- st.CloseSend()
	}()
	for i := 0; ; i++ {
		got, err := st.Recv()
		if err == io.EOF && i == b.N {
			break
		}
		if err != nil {
			cancel()
			b.Fatalf("Recv %d: %v (sender: %v)", i, err, <-sent)
		}
		if len(got) != len(payload) {
			b.Fatalf("echo of %d bytes", len(got))
		}
		recycle(got)
	}
	b.StopTimer()
	if err := <-sent; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkIdleConn* report the memory one idle, used connection holds,
// both ends counted, over 100 connections (B/conn; ns/op is meaningless).
func BenchmarkIdleConnMux(b *testing.B) { benchIdleConn(b, NewMux) }

// BenchmarkIdleConnGrid counts the connection, not the nodes (see
// IdleGridConnBytes).
func BenchmarkIdleConnGrid(b *testing.B) {
	b.ReportAllocs()
	var per float64
	for b.Loop() {
		var err error
		if per, err = IdleGridConnBytes(context.Background(), 100); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(per, "B/conn")
}

func BenchmarkIdleConnGRPC(b *testing.B) { benchIdleConn(b, NewGRPCUnary) }

func BenchmarkIdleConnRawWS(b *testing.B) { benchIdleConn(b, NewRawWS) }

func benchIdleConn(b *testing.B, newPair func() (Pair, error)) {
	b.ReportAllocs()
	var per float64
	for b.Loop() {
		var err error
		per, err = IdleConnBytes(context.Background(), newPair, 100)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(per, "B/conn")
}

// BenchmarkIdleStreams* report the memory of 10,000 open idle streams on one
// connection, both ends counted (B/stream and MiB/10k; ns/op is
// meaningless).
func BenchmarkIdleStreamsMux(b *testing.B) { benchIdleStreams(b, NewMuxStream) }

func BenchmarkIdleStreamsGrid(b *testing.B) { benchIdleStreams(b, NewGridStream) }

func BenchmarkIdleStreamsGRPC(b *testing.B) { benchIdleStreams(b, NewGRPCStream) }

func benchIdleStreams(b *testing.B, newStreamer func() (Streamer, error)) {
	b.ReportAllocs()
	var per float64
	for b.Loop() {
		s, err := newStreamer()
		if err != nil {
			b.Fatal(err)
		}
		per, err = IdleStreamBytes(context.Background(), s, 10000)
		s.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(per, "B/stream")
	b.ReportMetric(per*10000/(1<<20), "MiB/10k")
}
