package worker_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestReady: a worker is ready once a gateway that asked for it is
// connected, not before, not after that gateway is gone, and not while
// draining.
func TestReady(t *testing.T) {
	var lns [2]net.Listener // gateway, worker
	var names []string
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		names = append(names, "http://"+ln.Addr().String())
	}
	wk, w, err := worker.Start(context.Background(), lns[1], testcluster.GridOptions(names[1], names), worker.Options{Contract: testcluster.Echo})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wk.Close() })
	if err := w.Ready(); !errors.Is(err, worker.ErrNotProbed) {
		t.Fatalf("before any gateway: %v, want ErrNotProbed", err)
	}
	gw, err := grid.StartNode(context.Background(), lns[0], testcluster.GridOptions(names[0], names))
	if err != nil {
		t.Fatal(err)
	}
	disp := gateway.NewDispatcher(gw.Manager, gateway.DispatcherOptions{})
	if err := disp.WaitForWorkers(testutil.Context(t), 1); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, "the worker ready", func() bool { return w.Ready() == nil })
	_ = disp.Close()
	_ = gw.Close()
	testutil.WaitUntil(t, "the worker not ready without its gateway", func() bool { return errors.Is(w.Ready(), worker.ErrNoGateway) })
	if err := w.Drain(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	if err := w.Ready(); !errors.Is(err, worker.ErrWorkerDrain) {
		t.Fatalf("draining: %v, want ErrWorkerDrain", err)
	}
}
