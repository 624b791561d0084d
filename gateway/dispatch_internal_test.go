package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
)

// dispatchTestTimeout bounds every wait in these tests.
const dispatchTestTimeout = 30 * time.Second

// fakeWorker is a worker node whose handlers count their calls and
// advertise the capacity the test sets.
type fakeWorker struct {
	capacity    atomic.Int64
	infos, runs atomic.Int64
}

// serve runs f as grid node name on ln until the returned stop is called
// (or the test ends). Its handlers are registered before any peer can
// reach it.
func (f *fakeWorker) serve(tb testing.TB, ln net.Listener, name string, hosts []string) (stop func()) {
	tb.Helper()
	m, err := grid.NewManager(context.Background(), dispatchGridOptions(name, hosts))
	if err != nil {
		tb.Fatal(err)
	}
	err = wire.InfoCall.Register(m.Registry(), func(context.Context, *handlers.NoPayload) (*wire.WorkerInfo, error) {
		f.infos.Add(1)
		return &wire.WorkerInfo{Capacity: int(f.capacity.Load()), Mode: "fake"}, nil
	})
	if err == nil {
		err = wire.RunCall.Register(m.Registry(), func(_ context.Context, req *wire.TxRequest) (*wire.TxResult, error) {
			f.runs.Add(1)
			return &wire.TxResult{ID: req.ID, ResultJSON: "{}"}, nil
		})
	}
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(grid.DefaultRoutePath, m.Handler())
	srv := &http.Server{Handler: mux}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = m.Close()
			_ = srv.Close()
			<-served
		})
	}
	tb.Cleanup(stop)
	return stop
}

func dispatchGridOptions(local string, hosts []string) grid.Options {
	return grid.Options{
		Local: local, Hosts: hosts, Secret: []byte("dispatch test"),
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}
}

// gatewayAndWorkerNames listens for a gateway and a worker and names
// them so that the gateway dials the worker (with two hosts the lower
// name dials): the worker's handlers are then registered before the
// gateway can probe it.
func gatewayAndWorkerNames(tb testing.TB) (gw, wk net.Listener, hosts []string) {
	tb.Helper()
	lns := make([]net.Listener, 2)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns[i] = ln
	}
	names := []string{"http://" + lns[0].Addr().String(), "http://" + lns[1].Addr().String()}
	if !grid.ShouldDial(names[0], names[1]) {
		lns[0], lns[1], names[0], names[1] = lns[1], lns[0], names[1], names[0]
	}
	return lns[0], lns[1], names
}

// startDispatcher serves a gateway node on ln and returns a Dispatcher on
// it.
func startDispatcher(tb testing.TB, ln net.Listener, hosts []string, opts DispatcherOptions) *Dispatcher {
	tb.Helper()
	n, err := grid.StartNode(context.Background(), ln, dispatchGridOptions(hosts[0], hosts))
	if err != nil {
		tb.Fatal(err)
	}
	d := NewDispatcher(n.Manager, opts)
	tb.Cleanup(func() {
		_ = d.Close()
		_ = n.Close()
	})
	return d
}

func runOne(tb testing.TB, ctx context.Context, d *Dispatcher, id string) {
	tb.Helper()
	s, err := d.reserve(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	if res, err := d.run(ctx, s, &wire.TxRequest{ID: id}); err != nil || res.ID != id {
		tb.Fatalf("run %s: %v, %+v", id, err, res)
	}
}

// TestDispatcherReconnectedWorkerAtOnce: a worker that restarts gets the
// transaction that waited for it as soon as its connection is back, found
// by the grid's state change and not by a timer: the Dispatcher's probe
// interval is an hour, so any polling would leave the transaction waiting
// past the test's timeout. Each session is asked for its capacity once.
func TestDispatcherReconnectedWorkerAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), dispatchTestTimeout)
	defer cancel()
	gwLn, wkLn, hosts := gatewayAndWorkerNames(t)
	wkAddr := wkLn.Addr().String()
	first := new(fakeWorker)
	first.capacity.Store(2)
	stopFirst := first.serve(t, wkLn, hosts[1], hosts)
	d := startDispatcher(t, gwLn, hosts, DispatcherOptions{ProbeInterval: time.Hour, MaxProbeInterval: time.Hour})
	if err := d.WaitForWorkers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	runOne(t, ctx, d, "before")

	stopFirst()
	waitDown := time.Now().Add(dispatchTestTimeout)
	for ws := d.Workers(); len(ws) != 1 || ws[0].Up; ws = d.Workers() {
		if time.Now().After(waitDown) {
			t.Fatalf("worker not marked down after it stopped: %+v", ws)
		}
		time.Sleep(2 * time.Millisecond)
	}

	// A transaction waits for a worker while there is none; then the
	// worker comes back (a new process on the same address).
	done := make(chan error, 1)
	go func() {
		s, err := d.reserve(ctx, "")
		if err == nil {
			_, err = d.run(ctx, s, &wire.TxRequest{ID: "after"})
		}
		done <- err
	}()
	ln, err := net.Listen("tcp", wkAddr)
	if err != nil {
		t.Fatal(err)
	}
	second := new(fakeWorker)
	second.capacity.Store(2)
	second.serve(t, ln, hosts[1], hosts)
	if err := <-done; err != nil {
		t.Fatalf("transaction waiting for the reconnected worker: %v", err)
	}
	if f, s := first.runs.Load(), second.runs.Load(); f != 1 || s != 1 {
		t.Errorf("runs: %d before the restart, %d after; want 1 and 1", f, s)
	}
	if f, s := first.infos.Load(), second.infos.Load(); f != 1 || s != 1 {
		t.Errorf("capacity asked %d times of the first session and %d of the second; want once each", f, s)
	}
}

// TestDispatcherCapacityZeroBackoff: a connected worker that answers
// capacity 0 is asked again with a doubling wait, far less often than the
// ten times a second a 100 ms poll asked it, and is put to work once it
// answers a capacity.
func TestDispatcherCapacityZeroBackoff(t *testing.T) {
	const window = 2 * time.Second // a 100 ms poll asked 20 times in it
	ctx, cancel := context.WithTimeout(context.Background(), dispatchTestTimeout)
	defer cancel()
	gwLn, wkLn, hosts := gatewayAndWorkerNames(t)
	f := new(fakeWorker) // capacity 0
	f.serve(t, wkLn, hosts[1], hosts)
	d := startDispatcher(t, gwLn, hosts, DispatcherOptions{}) // the defaults: 100 ms doubling to 5 s

	deadline := time.Now().Add(dispatchTestTimeout)
	for f.infos.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the worker was never asked for its capacity")
		}
		time.Sleep(2 * time.Millisecond)
	}
	start := f.infos.Load()
	time.Sleep(window)
	// Asked at about 0.1, 0.3, 0.7 and 1.5 s after the first: 4 in the
	// window. A slow machine asks fewer, never more.
	if n := f.infos.Load() - start; n > 6 {
		t.Errorf("a capacity-0 worker was asked %d times in %v; want a backoff (about 4)", n, window)
	} else if n < 1 {
		t.Errorf("a capacity-0 worker was not asked again in %v", window)
	}
	if ws := d.Workers(); len(ws) != 0 {
		t.Errorf("a capacity-0 worker is listed: %+v", ws)
	}

	f.capacity.Store(3)
	if err := d.WaitForWorkers(ctx, 1); err != nil { // within MaxProbeInterval
		t.Fatal(err)
	}
	runOne(t, ctx, d, "tx")
	if ws := d.Workers(); len(ws) != 1 || ws[0].Capacity != 3 || ws[0].Done != 1 {
		t.Errorf("workers %+v", ws)
	}
}
