package bench

import (
	"context"
	"errors"
	"fmt"
)

// IdleConnBytes opens n pairs with newPair, makes one 512-byte call on each
// so that every connection has been used, and returns the memory (live heap
// and goroutine stacks, after garbage collection) that one idle connection
// holds, counting both of its ends. The pairs are closed before it returns.
func IdleConnBytes(ctx context.Context, newPair func() (Pair, error), n int) (float64, error) {
	if n < 1 {
		return 0, errors.New("bench: IdleConnBytes needs n >= 1")
	}
	pairs := make([]Pair, 0, n)
	defer func() {
		for _, p := range pairs {
			p.Close()
		}
	}()
	payload := make([]byte, 512)
	before := liveMem()
	for range n {
		p, err := newPair()
		if err != nil {
			return 0, err
		}
		pairs = append(pairs, p)
		if _, err := p.Call(ctx, payload); err != nil {
			return 0, err
		}
	}
	after := liveMem()
	return perItem(before, after, n), nil
}

// IdleStreamBytes opens n streams on s, echoes one 512-byte message on each
// so that every stream is fully set up, and returns the memory (live heap
// and goroutine stacks, after garbage collection) that one idle open stream
// holds, counting both ends. The streams are cancelled before it returns.
func IdleStreamBytes(ctx context.Context, s Streamer, n int) (float64, error) {
	if n < 1 {
		return 0, errors.New("bench: IdleStreamBytes needs n >= 1")
	}
	ctx, cancel := context.WithCancel(ctx)
	streams := make([]EchoStream, 0, n)
	defer func() {
		cancel()
		for _, st := range streams {
			for {
				if _, err := st.Recv(); err != nil {
					break
				}
			}
		}
	}()
	// Warm up the connection, so that its buffers are not counted.
	if _, err := StreamCaller(s, 1).Call(ctx, make([]byte, 512)); err != nil {
		return 0, err
	}
	payload := make([]byte, 512)
	before := liveMem()
	for range n {
		st, err := s.OpenStream(ctx)
		if err != nil {
			return 0, err
		}
		streams = append(streams, st)
		if err := st.Send(payload); err != nil {
			return 0, err
		}
		got, err := st.Recv()
		if err != nil {
			return 0, err
		}
		if len(got) != len(payload) {
			return 0, fmt.Errorf("bench: stream echo of %d bytes to %d", len(got), len(payload))
		}
	}
	after := liveMem()
	return perItem(before, after, n), nil
}

func perItem(before, after uint64, n int) float64 {
	if after < before {
		return 0
	}
	return float64(after-before) / float64(n)
}
