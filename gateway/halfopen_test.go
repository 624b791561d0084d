package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/blackhole"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestPrimeHalfOpen puts a proxy between the gateway and Prime that
// silently swallows every byte while keeping the TCP connections open (a
// half-open connection: Prime gone without a FIN). The gateway's
// keepalive (10 s + 3 s) notices, it reconnects once the path is back,
// and every transaction is answered exactly once.
func TestPrimeHalfOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 15 s")
	}
	t.Parallel()
	prime := testcluster.StartPrime(t, primesim.Config{})
	proxy, err := blackhole.Start(prime.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })

	pc := testcluster.PrimeConfig(prime)
	pc.ServerAddress = proxy.Addr()
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: pc})
	testcluster.Submit(t, prime, 10)
	testcluster.WaitAnswered(t, prime, 10, c)

	proxy.On()
	holeAt := time.Now()
	testcluster.Submit(t, prime, 10) // Prime queues them on a stream nobody hears
	testutil.WaitUntil(t, "the gateway to notice the dead stream", func() bool {
		return strings.Contains(c.Log.String(), "Prime stream ended")
	})
	if took := time.Since(holeAt); took > 20*time.Second {
		t.Fatalf("half-open connection noticed after %v, want about 13 s", took)
	} else {
		t.Logf("half-open connection noticed after %v", took.Round(100*time.Millisecond))
	}
	proxy.Off()
	testcluster.WaitAnswered(t, prime, 20, c)
	c.Stop()
	testcluster.CheckReport(t, prime, 20)
}
