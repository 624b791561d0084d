package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var demoUpper = handlers.New(1, "upper")

// runDemo starts two nodes on TCP loopback, each serving an "upper"
// handler, and has both call each other concurrently. It checks every
// answer and fails if any is wrong or missing.
func runDemo(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("demo", out)
	n := fs.Int("n", 10000, "requests to send (split between the two directions)")
	callers := fs.Int("callers", 64, "concurrent callers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 || *callers <= 0 {
		return fmt.Errorf("-n and -callers must be positive")
	}
	a, b, err := loopbackPair()
	if err != nil {
		return err
	}
	reg := new(handlers.Registry)
	if err := reg.RegisterSingle(demoUpper, func(_ context.Context, p []byte) ([]byte, error) {
		return bytes.ToUpper(p), nil
	}); err != nil {
		return err
	}
	nodeA, err := mux.NewSession(a, reg, mux.Config{})
	if err != nil {
		return err
	}
	defer nodeA.Close()
	nodeB, err := mux.NewSession(b, reg, mux.Config{})
	if err != nil {
		return err
	}
	defer nodeB.Close()
	fmt.Fprintf(out, "two nodes on %v <-> %v, %d requests from %d callers\n", a.LocalAddr(), b.LocalAddr(), *n, *callers)

	var next, done, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for c := range *callers {
		node := nodeA
		if c%2 == 1 {
			node = nodeB
		}
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(*n) || ctx.Err() != nil {
					return
				}
				msg := fmt.Appendf(nil, "request %d from caller %d", i, c)
				got, err := node.Request(ctx, demoUpper, msg)
				if err == nil && !bytes.Equal(got, bytes.ToUpper(msg)) {
					err = fmt.Errorf("request %d: wrong answer %q", i, got)
				}
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				done.Add(1)
			}
		})
	}
	stop := progress(out, *n, &done, start)
	wg.Wait()
	stop()
	el := time.Since(start)
	fmt.Fprintf(out, "\n%d answered, %d failed in %v (%.0f req/s)\n", done.Load(), failed.Load(), el.Round(time.Millisecond), float64(done.Load())/el.Seconds())
	if firstErr != nil {
		return firstErr
	}
	if done.Load() != int64(*n) {
		return fmt.Errorf("only %d of %d requests answered: %w", done.Load(), *n, ctx.Err())
	}
	return nil
}

// progress redraws a progress bar every 100 ms until the returned stop
// function is called.
func progress(out io.Writer, total int, done *atomic.Int64, start time.Time) (stop func()) {
	quit := make(chan struct{})
	finished := make(chan struct{})
	draw := func() {
		d := done.Load()
		const width = 30
		filled := int(float64(width) * float64(d) / float64(total))
		bar := bytes.Repeat([]byte("="), filled)
		bar = append(bar, bytes.Repeat([]byte(" "), width-filled)...)
		rate := float64(d) / time.Since(start).Seconds()
		fmt.Fprintf(out, "\r[%s] %d/%d  %.0f/s ", bar, d, total, rate)
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-quit:
				draw()
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// loopbackPair returns both ends of one TCP connection on 127.0.0.1.
func loopbackPair() (net.Conn, net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		a.Close()
		return nil, nil, r.err
	}
	return a, r.c, nil
}
