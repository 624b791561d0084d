package worker_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestWorkerFirstProbe: a worker started with worker.Start has its
// handlers before its node dials or accepts a gateway, so the
// dispatcher's first probe finds it: with an hour between probes, it
// would not otherwise be seen within the test. Both dial sides.
func TestWorkerFirstProbe(t *testing.T) {
	for _, workerDials := range []bool{false, true} {
		name := "gateway dials"
		if workerDials {
			name = "worker dials"
		}
		t.Run(name, func(t *testing.T) {
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
			if grid.ShouldDial(names[1], names[0]) != workerDials {
				lns[0], lns[1], names[0], names[1] = lns[1], lns[0], names[1], names[0]
			}
			gw, err := grid.StartNode(context.Background(), lns[0], testcluster.GridOptions(names[0], names))
			if err != nil {
				t.Fatal(err)
			}
			disp := gateway.NewDispatcher(gw.Manager, gateway.DispatcherOptions{ProbeInterval: time.Hour, MaxProbeInterval: time.Hour})
			t.Cleanup(func() {
				_ = disp.Close()
				_ = gw.Close()
			})
			wk, w, err := worker.Start(context.Background(), lns[1], testcluster.GridOptions(names[1], names), worker.Options{Contract: testcluster.Echo, Capacity: 3})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = wk.Close() })
			if err := disp.WaitForWorkers(testutil.Context(t), 1); err != nil {
				t.Fatalf("the first probe did not find the worker: %v", err)
			}
			if ws := disp.Workers(); len(ws) != 1 || ws[0].Capacity != 3 || w.Capacity() != 3 {
				t.Fatalf("workers %+v", ws)
			}
			if wk.Manager.Registry().Lookup(wire.HandlerRun) == nil {
				t.Fatal("no run handler on the node")
			}
		})
	}
}

func TestStartWorkerErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	name := "http://" + ln.Addr().String()
	if _, _, err := worker.Start(context.Background(), ln, testcluster.GridOptions(name, []string{name}), worker.Options{}); !errors.Is(err, worker.ErrConfig) {
		t.Fatalf("no contract: %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the listener was left open")
	}
	// A registry given in the grid options gets the handlers; one that
	// has them already is refused.
	reg := new(handlers.Registry)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	name = "http://" + ln2.Addr().String()
	opts := testcluster.GridOptions(name, []string{name})
	opts.Registry = reg
	n, _, err := worker.Start(context.Background(), ln2, opts, worker.Options{Contract: testcluster.Echo})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if reg.Lookup(wire.HandlerInfo) == nil || n.Manager.Registry() != reg {
		t.Fatal("the given registry was not used")
	}
	ln3, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := worker.Start(context.Background(), ln3, opts, worker.Options{Contract: testcluster.Echo}); err == nil {
		t.Fatal("handlers registered twice")
	}
}
