package gateway_test

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestMembershipGrowShrink: under continuous load, the gateway's
// membership grows from 1 to 5 workers and shrinks back to 1 through
// grid.Manager.SetHosts. Each new worker gets its first transaction soon
// after it starts (the Dispatcher follows the membership, no polling); a
// removed worker drains before it is stopped; Prime has every answer
// exactly once, and calls between the gateway and the worker that stays
// never fail.
func TestMembershipGrowShrink(t *testing.T) {
	const workers = 5
	prime := testcluster.StartPrime(t, primesim.Config{})
	var (
		mu    sync.Mutex
		first = make(map[int]time.Time) // worker → its first transaction
	)
	contractFor := func(i int) contract.Func {
		return func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
			mu.Lock()
			if _, ok := first[i]; !ok {
				first[i] = time.Now()
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond) // long enough for calls to be in flight at a removal
			return testcluster.Echo(ctx, txJSON, env, secrets)
		}
	}
	c := testcluster.Start(t, testcluster.Options{Workers: workers, Listed: 1, Capacity: 4,
		Prime: testcluster.PrimeConfig(prime), ContractFor: contractFor})
	for i := 1; i < workers; i++ {
		c.StopWorker(i)
	}
	m := c.GatewayNode.Manager

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var submitted, stayCalls, stayFailed atomic.Int64
	wg.Go(func() { // continuous load from Prime
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			tx, err := prime.NewTransaction(testcluster.ContractID, seq, 0)
			if err == nil {
				_, err = prime.Submit(testcluster.ContractID, tx)
			}
			if err != nil {
				t.Errorf("submit: %v", err)
				return
			}
			submitted.Add(1)
		}
	})
	wg.Go(func() { // calls between the gateway and the worker that stays
		conn := m.Connection(c.Names[1])
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
			_, err := wire.InfoCall.Call(ctx, conn, &handlers.NoPayload{})
			cancel()
			stayCalls.Add(1)
			if err != nil {
				stayFailed.Add(1)
				t.Errorf("gateway → the worker that stays: %v", err)
			}
		}
	})

	var toFirst []time.Duration
	for i := 1; i < workers; i++ { // grow
		start := time.Now()
		c.StartWorker(i, contractFor(i))
		if err := m.SetHosts(c.Names[:i+2]); err != nil {
			t.Fatal(err)
		}
		testutil.WaitUntil(t, "the new worker's first transaction", func() bool {
			mu.Lock()
			defer mu.Unlock()
			_, ok := first[i]
			return ok
		})
		mu.Lock()
		toFirst = append(toFirst, first[i].Sub(start))
		mu.Unlock()
	}
	testutil.WaitUntil(t, "load on every worker", func() bool { return len(c.Dispatcher.Workers()) == workers })
	for i := workers - 1; i >= 1; i-- { // shrink
		conn := m.Connection(c.Names[i+1])
		if err := m.SetHosts(c.Names[:i+1]); err != nil {
			t.Fatal(err)
		}
		waitRemoved(t, conn)
		c.StopWorker(i) // drained: nothing of ours runs there
	}
	time.Sleep(200 * time.Millisecond) // more load on the one left
	close(stop)
	wg.Wait()

	n := int(submitted.Load())
	testcluster.WaitAnswered(t, prime, n, c)
	r := testcluster.CheckReport(t, prime, n)
	sort.Slice(toFirst, func(a, b int) bool { return toFirst[a] < toFirst[b] })
	t.Logf("%d transactions under load: %v", n, r)
	t.Logf("worker start → first transaction: %v", toFirst)
	t.Logf("gateway ↔ the worker that stayed: %d calls, %d failed; re-dispatched %d, may have run twice %d",
		stayCalls.Load(), stayFailed.Load(), c.Dispatcher.Redispatched(), c.Dispatcher.Rerun())
	if c.Dispatcher.Rerun() != 0 {
		t.Errorf("%d transactions may have run twice", c.Dispatcher.Rerun())
	}
	for _, d := range toFirst {
		if d > 5*time.Second { // 1 s on an idle machine; generous for a busy one
			t.Errorf("a worker waited %v for its first transaction", d)
		}
	}
	if len(c.Dispatcher.Workers()) != 1 {
		t.Errorf("dispatcher still knows %+v", c.Dispatcher.Workers())
	}
}

// waitRemoved waits until c reaches StateRemoved.
func waitRemoved(t *testing.T, c *grid.Connection) {
	t.Helper()
	ctx := testutil.Context(t)
	for {
		ch := c.StateChanged()
		if c.State() == grid.StateRemoved {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s: state %v, want removed", c.Host(), c.State())
		}
	}
}
