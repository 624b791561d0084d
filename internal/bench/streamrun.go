package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"
)

// StreamCaller returns a Caller whose every Call is one whole stream on s:
// open, msgs echoes of the payload one after another, CloseSend and the
// final io.EOF. It answers with the payload, so [Run] measures streams per
// second and the latency of a whole stream including its setup.
func StreamCaller(s Streamer, msgs int) Caller {
	return streamCaller{s, msgs}
}

type streamCaller struct {
	s    Streamer
	msgs int
}

func (c streamCaller) Call(ctx context.Context, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	recycle := recycler(st)
	for range c.msgs {
		if err := st.Send(payload); err != nil {
			return nil, err
		}
		got, err := st.Recv()
		if err != nil {
			return nil, err
		}
		if len(got) != len(payload) {
			return nil, fmt.Errorf("bench: stream echo of %d bytes to %d", len(got), len(payload))
		}
		recycle(got)
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	if _, err := st.Recv(); err != io.EOF {
		return nil, fmt.Errorf("bench: Recv after CloseSend: %v, want io.EOF", err)
	}
	return payload, nil
}

// RunLongStream sends messages of size bytes on one stream of s for d (or
// until ctx is done), from one goroutine, while another receives the
// echoes, and reports the echoed messages per second. P50 and P99 are not
// measured (zero): the messages are pipelined.
func RunLongStream(ctx context.Context, s Streamer, size int, d time.Duration) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.OpenStream(ctx)
	if err != nil {
		return Result{}, err
	}
	payload := bytes.Repeat([]byte{'s'}, size)
	recycle := recycler(st)
	var (
		sendErr error
		wg      sync.WaitGroup
		n       int64
	)
	m0 := readMem()
	start := time.Now()
	deadline := start.Add(d)
	wg.Go(func() {
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if sendErr = st.Send(payload); sendErr != nil {
				cancel()
				return
			}
		}
		sendErr = st.CloseSend()
	})
	for {
		got, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			cancel()
			wg.Wait()
			return Result{}, err
		}
		if len(got) != size {
			cancel()
			wg.Wait()
			return Result{}, fmt.Errorf("bench: stream echo of %d bytes to %d", len(got), size)
		}
		recycle(got)
		n++
	}
	elapsed := time.Since(start)
	wg.Wait()
	r := Result{Ops: n, Duration: elapsed}
	r.setRate()
	r.setAllocs(m0, readMem())
	if sendErr != nil && !errors.Is(sendErr, context.Canceled) {
		return r, sendErr
	}
	return r, nil
}

// memStats is the part of runtime.MemStats the benchmarks use.
type memStats struct {
	mallocs, totalAlloc uint64
}

func readMem() memStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memStats{mallocs: ms.Mallocs, totalAlloc: ms.TotalAlloc}
}

// liveMem collects garbage (twice, so that sync.Pool caches are emptied
// too) and returns the bytes held by live heap objects and goroutine stacks.
func liveMem() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}
