package gateway_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// TestWorkerDrain: a draining worker finishes the transaction it runs,
// refuses the next one without running it, and the gateway runs that one
// on the other worker without counting a failure; every transaction runs
// once and Prime has every answer once.
func TestWorkerDrain(t *testing.T) {
	prime := startPrime(t, primesim.Config{})
	all := func(string) bool { return true }
	gates := []*gate{newGate(all), newGate(all)}
	c := startCluster(t, clusterOptions{workers: 2, capacity: 1, prime: primeConfig(prime),
		contractFor: func(i int) gateway.Contract { return gates[i].contract }})
	submit(t, prime, 2)
	a, b := gates[0].recv(t), gates[1].recv(t) // one on each worker: both full

	drained := make(chan error, 1)
	go func() { drained <- c.ws[0].Drain(testCtx(t)) }()
	waitUntil(t, "worker 0 to drain", c.ws[0].Draining)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.ws[0].Drain(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with a transaction running and a cancelled context: %v", err)
	}
	// The next transaction goes to worker 0 as soon as a finishes there,
	// and is refused.
	next := submit(t, prime, 1)[0]
	waitUntil(t, "the gateway to receive it", func() bool { return c.gw.Stats().Received == 3 })
	close(gates[0].release)
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Drain did not return after the last transaction finished")
	}
	waitUntil(t, "worker 0 to refuse a transaction", func() bool { return c.ws[0].Refused() == 1 })
	close(gates[1].release)
	waitAnswered(t, prime, 3, c)
	checkReport(t, prime, 3)

	if r := prime.Report(); r.ErrorResponses != 0 {
		t.Errorf("Prime got error answers:\n%v", r)
	}
	if n := gates[0].runsOf(a) + gates[1].runsOf(a); n != 1 {
		t.Errorf("the transaction running when worker 0 drained ran %d times", n)
	}
	if gates[0].runsOf(next) != 0 || gates[1].runsOf(next) != 1 || gates[1].runsOf(b) != 1 {
		t.Errorf("runs of the refused transaction: %d on the draining worker, %d on the other; of b: %d",
			gates[0].runsOf(next), gates[1].runsOf(next), gates[1].runsOf(b))
	}
	if w := c.ws[0]; w.Done() != 1 || w.Refused() != 1 {
		t.Errorf("draining worker: done %d, refused %d; want 1 and 1", w.Done(), w.Refused())
	}
	if st := c.gw.Stats(); st.Failed != 0 || st.Sent != 3 {
		t.Errorf("gateway stats %+v: want 3 sent, none failed", st)
	}
	if n := c.disp.Redispatched(); n != 1 {
		t.Errorf("redispatched %d, want 1", n)
	}
	for _, w := range c.disp.Workers() {
		if draining := w.Host == c.names[1]; w.Draining != draining || w.Up == draining {
			t.Errorf("worker %+v: want draining and down only for %s", w, c.names[1])
		}
	}
}
