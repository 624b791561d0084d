package worker_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// heldContract runs until release is closed or its context ends, and
// counts its runs and how its context ended.
type heldContract struct {
	runs      atomic.Int32
	cancelled atomic.Int32
	started   chan struct{}
	release   chan struct{}
}

func newHeld() *heldContract {
	return &heldContract{started: make(chan struct{}, 16), release: make(chan struct{})}
}

func (h *heldContract) fn(ctx context.Context, txJSON string, _, _ map[string]string) (contract.Output, error) {
	h.runs.Add(1)
	h.started <- struct{}{}
	select {
	case <-h.release:
		return contract.Output{ResultJSON: txJSON}, nil
	case <-ctx.Done():
		h.cancelled.Add(1)
		return contract.Output{}, ctx.Err()
	}
}

// callers is a worker node and caller nodes on loopback.
type callers struct {
	w     *worker.Worker
	nodes []*grid.Node // callers
	names []string     // the worker's first
}

func startCallers(t *testing.T, n int, fn contract.Func) *callers {
	t.Helper()
	lns := make([]net.Listener, n+1)
	c := &callers{}
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		c.names = append(c.names, "http://"+ln.Addr().String())
	}
	wn, w, err := worker.Start(context.Background(), lns[0], testcluster.GridOptions(c.names[0], c.names), worker.Options{Contract: fn, Capacity: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Close()
		_ = wn.Close()
	})
	c.w = w
	for i := 1; i <= n; i++ {
		node, err := grid.StartNode(context.Background(), lns[i], testcluster.GridOptions(c.names[i], c.names))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = node.Close() })
		if err := node.Manager.Connection(c.names[0]).WaitForConnect(testutil.Context(t)); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, node)
	}
	return c
}

// call runs transaction id from caller i, in the background.
func (c *callers) call(ctx context.Context, i int, id string) <-chan *wire.TxResult {
	out := make(chan *wire.TxResult, 1)
	go func() {
		res, err := wire.RunCall.Call(ctx, c.nodes[i].Manager.Connection(c.names[0]), &wire.TxRequest{ID: id, JSON: `"` + id + `"`})
		if err != nil {
			res = &wire.TxResult{ID: id, Error: "call: " + err.Error()}
		}
		out <- res
	}()
	return out
}

func recvResult(t *testing.T, ch <-chan *wire.TxResult) *wire.TxResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testutil.Timeout):
		t.Fatal("no answer")
		return nil
	}
}

func waitStarted(t *testing.T, h *heldContract) {
	t.Helper()
	select {
	case <-h.started:
	case <-time.After(testutil.Timeout):
		t.Fatal("the contract did not start")
	}
}

// TestWorkerJoinsRun: a transaction sent again while it runs is joined to
// its run, and once it ran, answered from the record: it runs once.
func TestWorkerJoinsRun(t *testing.T) {
	h := newHeld()
	c := startCallers(t, 2, h.fn)
	ctx := testutil.Context(t)
	first := c.call(ctx, 0, "tx-1")
	waitStarted(t, h)
	second := c.call(ctx, 1, "tx-1")
	testutil.WaitUntil(t, "the second call to arrive", func() bool { return c.w.Running() == 1 })
	close(h.release)
	a, b := recvResult(t, first), recvResult(t, second)
	if a.Error != "" || a.ResultJSON != `"tx-1"` || a.FromRecord || b.ResultJSON != a.ResultJSON || !b.FromRecord {
		t.Fatalf("answers %+v and %+v", a, b)
	}
	third := recvResult(t, c.call(ctx, 0, "tx-1"))
	if !third.FromRecord || third.ResultJSON != `"tx-1"` {
		t.Fatalf("third answer %+v", third)
	}
	if runs := h.runs.Load(); runs != 1 {
		t.Fatalf("ran %d times", runs)
	}
	if st := c.w.Status(); st.FromRecord != 2 || st.Done != 1 || st.Recorded != 1 {
		t.Fatalf("status %+v", st)
	}
}

// TestWorkerRunOutlivesCaller: a run whose caller's node dies goes on to
// its end, and the transaction sent again is answered from the record.
func TestWorkerRunOutlivesCaller(t *testing.T) {
	h := newHeld()
	c := startCallers(t, 2, h.fn)
	ctx := testutil.Context(t)
	lost := c.call(ctx, 0, "tx-2")
	waitStarted(t, h)
	_ = c.nodes[0].Close() // the gateway dies: its session ends, no call is cancelled
	if r := recvResult(t, lost); r.Error == "" {
		t.Fatalf("the dead caller got %+v", r)
	}
	close(h.release)
	testutil.WaitUntil(t, "the run to be recorded", func() bool { return c.w.Done() == 1 })
	again := recvResult(t, c.call(ctx, 1, "tx-2"))
	if !again.FromRecord || again.Error != "" || again.ResultJSON != `"tx-2"` || h.runs.Load() != 1 || h.cancelled.Load() != 0 {
		t.Fatalf("answer %+v after %d runs, %d cancelled", again, h.runs.Load(), h.cancelled.Load())
	}
}

// TestWorkerCallerCancels: a call its caller cancels cancels its run, which
// is not recorded: the transaction sent again runs again.
func TestWorkerCallerCancels(t *testing.T) {
	h := newHeld()
	c := startCallers(t, 1, h.fn)
	ctx, cancel := context.WithCancel(testutil.Context(t))
	first := c.call(ctx, 0, "tx-3")
	waitStarted(t, h)
	cancel()
	recvResult(t, first)
	testutil.WaitUntil(t, "the run to be cancelled", func() bool { return h.cancelled.Load() == 1 && c.w.Running() == 0 })
	again := c.call(testutil.Context(t), 0, "tx-3")
	waitStarted(t, h)
	close(h.release)
	if r := recvResult(t, again); r.FromRecord || r.ResultJSON != `"tx-3"` || h.runs.Load() != 2 {
		t.Fatalf("answer %+v after %d runs", r, h.runs.Load())
	}
}

// TestWorkerCloseAbandons: Close gives up a run: its caller is told it was
// abandoned, so the gateway runs it elsewhere, and nothing is recorded.
func TestWorkerCloseAbandons(t *testing.T) {
	h := newHeld()
	c := startCallers(t, 1, h.fn)
	call := c.call(testutil.Context(t), 0, "tx-4")
	waitStarted(t, h)
	_ = c.w.Close()
	r := recvResult(t, call)
	if !r.Draining || !r.Abandoned || h.cancelled.Load() != 1 {
		t.Fatalf("answer %+v, cancelled %d", r, h.cancelled.Load())
	}
	if st := c.w.Status(); st.Recorded != 0 || st.Done != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestWorkerClosedRunsNothing: a closed worker whose node is still up (a
// gateway may still reach it) runs nothing more: its info answers
// capacity 0, draining, and every transaction sent to it is refused
// without its contract starting, not reported as abandoned (it did not
// run). A slot freed by Close used to let select start about half.
func TestWorkerClosedRunsNothing(t *testing.T) {
	h := newHeld()
	c := startCallers(t, 1, h.fn)
	conn := c.nodes[0].Manager.Connection(c.names[0])
	ctx := testutil.Context(t)
	held := c.call(ctx, 0, "tx-held")
	waitStarted(t, h)
	_ = c.w.Close()
	if r := recvResult(t, held); !r.Abandoned {
		t.Fatalf("the run Close gave up was answered %+v", r)
	}
	info, err := wire.InfoCall.Call(ctx, conn, &handlers.NoPayload{})
	if err != nil || info.Capacity != 0 || !info.Draining {
		t.Fatalf("a closed worker's info: %+v, %v", info, err)
	}
	const n = 20
	for i := range n {
		id := fmt.Sprintf("tx-after-close-%d", i)
		res, err := wire.RunCall.Call(ctx, conn, &wire.TxRequest{ID: id, JSON: `"` + id + `"`})
		if err != nil || !res.Draining || res.Abandoned {
			t.Fatalf("transaction %d sent after Close: %+v, %v", i, res, err)
		}
	}
	if runs := h.runs.Load(); runs != 1 {
		t.Fatalf("the contract started %d times, want 1 (the run before Close)", runs)
	}
	if st := c.w.Status(); st.Done != 0 || st.Recorded != 0 || st.Refused != n {
		t.Fatalf("status %+v", st)
	}
}

// TestWorkerContractTimeout: a contract past TxRequest.Timeout is answered
// with its timeout, counted, and recorded like any result.
func TestWorkerContractTimeout(t *testing.T) {
	h := newHeld()
	c := startCallers(t, 1, h.fn)
	conn := c.nodes[0].Manager.Connection(c.names[0])
	res, err := wire.RunCall.Call(testutil.Context(t), conn, &wire.TxRequest{ID: "tx-5", Timeout: int64(50 * time.Millisecond)})
	if err != nil || !res.TimedOut || res.Error == "" {
		t.Fatalf("answer %+v, %v", res, err)
	}
	if st := c.w.Status(); st.ContractTimeouts != 1 || st.ContractErrors != 0 || st.Recorded != 1 {
		t.Fatalf("status %+v", st)
	}
}

// TestWorkerJoinOfCancelledRun: a call joined to a run whose caller then
// cancels it does not get the cancelled run's output: the transaction runs
// afresh for it.
func TestWorkerJoinOfCancelledRun(t *testing.T) {
	h := newHeld()
	c := startCallers(t, 2, h.fn)
	ctx, cancel := context.WithCancel(testutil.Context(t))
	first := c.call(ctx, 0, "tx-6")
	waitStarted(t, h)
	joined := c.call(testutil.Context(t), 1, "tx-6")
	testutil.WaitUntil(t, "the second call to join", func() bool { return c.w.Running() == 1 && h.runs.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // the join reaches the worker (it waits on the run; nothing counts it)
	cancel()
	recvResult(t, first)
	waitStarted(t, h) // the fresh run for the joined call
	close(h.release)
	r := recvResult(t, joined)
	if r.Error != "" || r.ResultJSON != `"tx-6"` || r.FromRecord || h.runs.Load() != 2 {
		t.Fatalf("joined call answered %+v after %d runs", r, h.runs.Load())
	}
}
