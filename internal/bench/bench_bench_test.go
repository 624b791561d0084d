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

func BenchmarkGRPCUnary(b *testing.B) { benchPair(b, NewGRPCUnary) }

func BenchmarkRawWS(b *testing.B) { benchPair(b, NewRawWS) }

// benchPair runs closed-loop round trips from a fixed number of caller
// goroutines. b.N is the total number of calls; allocs/op is per call.
func benchPair(b *testing.B, newPair func() (Pair, error)) {
	for _, size := range []int{64, 512, 4096} {
		for _, callers := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("size=%d/callers=%d", size, callers), func(b *testing.B) {
				p, err := newPair()
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				payload := payloadOf(size, 1)
				ctx := context.Background()
				// Warm up connections and pools outside the measurement.
				if _, err := p.Call(ctx, payload); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.ResetTimer()
				runCallers(b, callers, b.N, func() error {
					resp, err := p.Call(ctx, payload)
					if err == nil && len(resp) != size {
						err = fmt.Errorf("response of %d bytes", len(resp))
					}
					return err
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
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

// BenchmarkGRPCStream10x512 measures whole streams: open, 10 echoes of 512 B,
// CloseSend and the final io.EOF. b.N is the number of streams.
func BenchmarkGRPCStream10x512(b *testing.B) {
	for _, streams := range []int{2, 8, 64} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			s, err := NewGRPCStream()
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			payload := payloadOf(512, 1)
			ctx := context.Background()
			stream := func() error {
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				st, err := s.OpenStream(ctx)
				if err != nil {
					return err
				}
				for range 10 {
					if err := st.Send(payload); err != nil {
						return err
					}
					got, err := st.Recv()
					if err != nil {
						return err
					}
					if !bytes.Equal(got, payload) {
						return fmt.Errorf("echo differs")
					}
				}
				if err := st.CloseSend(); err != nil {
					return err
				}
				if _, err := st.Recv(); err != io.EOF {
					return fmt.Errorf("Recv after CloseSend: %v", err)
				}
				return nil
			}
			if err := stream(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			runCallers(b, streams, b.N, stream)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "streams/s")
			b.ReportMetric(float64(10*b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
