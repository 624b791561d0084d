package gateway_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestWorkerDrain: a draining worker finishes the transaction it runs,
// refuses the next one without running it, and the gateway runs that one
// on the other worker without counting a failure; every transaction runs
// once and Prime has every answer once.
func TestWorkerDrain(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	all := func(string) bool { return true }
	gates := []*testcluster.Gate{testcluster.NewGate(all), testcluster.NewGate(all)}
	c := testcluster.Start(t, testcluster.Options{Workers: 2, Capacity: 1, Prime: testcluster.PrimeConfig(prime),
		ContractFor: func(i int) contract.Func { return gates[i].Contract }})
	testcluster.Submit(t, prime, 2)
	a, b := gates[0].Recv(t), gates[1].Recv(t) // one on each worker: both full

	drained := make(chan error, 1)
	go func() { drained <- c.Workers[0].Drain(testutil.Context(t)) }()
	testutil.WaitUntil(t, "worker 0 to drain", c.Workers[0].Draining)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Workers[0].Drain(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with a transaction running and a cancelled context: %v", err)
	}
	// The next transaction goes to worker 0 as soon as a finishes there,
	// and is refused.
	next := testcluster.Submit(t, prime, 1)[0]
	testutil.WaitUntil(t, "the gateway to receive it", func() bool { return c.Gateway.Stats().Received == 3 })
	close(gates[0].Release)
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(testutil.Timeout):
		t.Fatal("Drain did not return after the last transaction finished")
	}
	testutil.WaitUntil(t, "worker 0 to refuse a transaction", func() bool { return c.Workers[0].Refused() == 1 })
	close(gates[1].Release)
	testcluster.WaitAnswered(t, prime, 3, c)
	testcluster.CheckReport(t, prime, 3)

	if r := prime.Report(); r.ErrorResponses != 0 {
		t.Errorf("Prime got error answers:\n%v", r)
	}
	if n := gates[0].RunsOf(a) + gates[1].RunsOf(a); n != 1 {
		t.Errorf("the transaction running when worker 0 drained ran %d times", n)
	}
	if gates[0].RunsOf(next) != 0 || gates[1].RunsOf(next) != 1 || gates[1].RunsOf(b) != 1 {
		t.Errorf("runs of the refused transaction: %d on the draining worker, %d on the other; of b: %d",
			gates[0].RunsOf(next), gates[1].RunsOf(next), gates[1].RunsOf(b))
	}
	if w := c.Workers[0]; w.Done() != 1 || w.Refused() != 1 {
		t.Errorf("draining worker: done %d, refused %d; want 1 and 1", w.Done(), w.Refused())
	}
	if st := c.Gateway.Stats(); st.Failed != 0 || st.Sent != 3 {
		t.Errorf("gateway stats %+v: want 3 sent, none failed", st)
	}
	if n := c.Dispatcher.Redispatched(); n != 1 {
		t.Errorf("redispatched %d, want 1", n)
	}
	for _, w := range c.Dispatcher.Workers() {
		if draining := w.Host == c.Names[1]; w.Draining != draining || w.Up == draining {
			t.Errorf("worker %+v: want draining and down only for %s", w, c.Names[1])
		}
	}
}
