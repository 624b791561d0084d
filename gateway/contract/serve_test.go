package contract_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// pipeServe runs contract.ServeProcessWith(fn, opts) on pipes: the test
// writes its stdin lines with in and reads its stdout lines from out. The
// pipes are closed and ServeProcess waited for at cleanup; done receives
// its return.
type pipeServe struct {
	stdin *io.PipeWriter
	out   *bufio.Scanner
	done  chan error
}

func startPipeServe(t *testing.T, fn contract.Func, opts contract.ServeProcessOptions) *pipeServe {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ps := &pipeServe{stdin: inW, out: bufio.NewScanner(outR), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		ps.done <- contract.ServeProcessWith(ctx, inR, outW, fn, opts)
		outW.Close()
	}()
	t.Cleanup(func() {
		cancel()
		inW.CloseWithError(errors.New("test over"))
		outR.CloseWithError(errors.New("test over"))
		<-ps.done
		ps.done <- nil
	})
	return ps
}

// in writes line and a newline to stdin.
func (ps *pipeServe) in(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(ps.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// next reads one stdout line.
func (ps *pipeServe) next(t *testing.T) string {
	t.Helper()
	if !ps.out.Scan() {
		t.Fatalf("no line on stdout: %v", ps.out.Err())
	}
	return ps.out.Text()
}

// answerOf decodes an answer line.
func answerOf(t *testing.T, line string) (id uint64, errText string) {
	t.Helper()
	var a struct {
		ID    uint64 `json:"id"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &a); err != nil || a.ID == 0 {
		t.Fatalf("not an answer: %q (%v)", line, err)
	}
	return a.ID, a.Error
}

// waitCtx is a contract that answers when its context ends, with the
// cause as its error, or at once for a transaction "now".
func waitCtx(ctx context.Context, txJSON string, _, _ map[string]string) (contract.Output, error) {
	if txJSON == "now" {
		return contract.Output{ResultJSON: "{}"}, nil
	}
	<-ctx.Done()
	return contract.Output{}, context.Cause(ctx)
}

// TestServeProcessCancel: told that the host sends cancel lines, the
// contract's side says hello first, once; a cancel line cancels its
// transaction's context with ErrCancelled; a cancel for a
// transaction it does not run is ignored.
func TestServeProcessCancel(t *testing.T) {
	ps := startPipeServe(t, waitCtx, contract.ServeProcessOptions{})
	ps.in(t, `{"id":1,"transaction_json":"wait","can_cancel":true}`)
	if line := ps.next(t); line != `{"hello":{"cancel":true}}` {
		t.Fatalf("first line %q, want the hello", line)
	}
	ps.in(t, `{"id":2,"transaction_json":"wait","can_cancel":true}`)
	ps.in(t, `{"id":99,"cancel":true}`) // never sent
	ps.in(t, `{"id":2,"cancel":true}`)
	if id, e := answerOf(t, ps.next(t)); id != 2 || e != contract.ErrCancelled.Error() {
		t.Fatalf("answer %d with error %q, want 2 with %q", id, e, contract.ErrCancelled)
	}
	ps.in(t, `{"id":3,"transaction_json":"now","can_cancel":true}`)
	if id, e := answerOf(t, ps.next(t)); id != 3 || e != "" {
		t.Fatalf("answer %d with error %q, want 3 without (and no second hello)", id, e)
	}
	ps.in(t, `{"id":3,"cancel":true}`) // crossed its answer
	ps.in(t, `{"id":1,"cancel":true}`)
	if id, e := answerOf(t, ps.next(t)); id != 1 || e != contract.ErrCancelled.Error() {
		t.Fatalf("answer %d with error %q, want 1 cancelled", id, e)
	}
	ps.stdin.Close()
	if err := <-ps.done; err != nil {
		t.Fatalf("ServeProcess: %v", err)
	}
	ps.done <- nil
}

// TestServeProcessNoHelloForOldHost: a host that does not say it sends
// cancel lines (an older worker) gets no hello, only answers.
func TestServeProcessNoHelloForOldHost(t *testing.T) {
	ps := startPipeServe(t, waitCtx, contract.ServeProcessOptions{})
	ps.in(t, `{"id":1,"transaction_json":"now"}`)
	if id, _ := answerOf(t, ps.next(t)); id != 1 {
		t.Fatalf("answer %d", id)
	}
}

// TestServeProcessBound: with MaxConcurrent n, at most n transactions
// run at once, and while n run no further line is read: a host that
// sends more waits, its writes blocked in the pipe. All are answered
// once in the end.
func TestServeProcessBound(t *testing.T) {
	const n, total = 3, 10
	var (
		cur, peak atomic.Int32
		release   = make(chan struct{})
	)
	fn := func(ctx context.Context, txJSON string, _, _ map[string]string) (contract.Output, error) {
		c := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return contract.Output{ResultJSON: txJSON}, nil
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the pipes are closed
	ps := startPipeServe(t, fn, contract.ServeProcessOptions{MaxConcurrent: n})
	var written atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= total; i++ {
			if _, err := fmt.Fprintf(ps.stdin, `{"id":%d,"transaction_json":"{}"}`+"\n", i); err != nil {
				return
			}
			written.Add(1)
		}
		ps.stdin.Close()
	}()
	testutil.WaitUntil(t, "n transactions to run", func() bool { return cur.Load() >= n })
	// Nothing more may start, nor more than one line (held for a free
	// slot) be read, until one ends: watch for a while.
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if c, w := cur.Load(), written.Load(); c > n || w > n+1 {
			t.Fatalf("%d running and %d lines read with MaxConcurrent %d", c, w, n)
		}
	}
	answered := map[uint64]int{}
	for range total {
		release <- struct{}{}
		id, _ := answerOf(t, ps.next(t))
		answered[id]++
	}
	if err := <-ps.done; err != nil {
		t.Fatalf("ServeProcess: %v", err)
	}
	ps.done <- nil
	if p := peak.Load(); p != n {
		t.Fatalf("peak concurrency %d, want %d", p, n)
	}
	for i := uint64(1); i <= total; i++ {
		if answered[i] != 1 {
			t.Fatalf("answers per id: %v", answered)
		}
	}
}

func TestServeProcessOptionsErrors(t *testing.T) {
	err := contract.ServeProcessWith(context.Background(), nil, io.Discard, waitCtx, contract.ServeProcessOptions{MaxConcurrent: -1})
	if !errors.Is(err, contract.ErrConfig) {
		t.Fatalf("err %v", err)
	}
}
