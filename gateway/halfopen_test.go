package gateway_test

import (
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/gridmesh/gridmesh/gateway/primesim"
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
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	proxy := toxiproxy.NewProxy(srv, "prime", "127.0.0.1:0", prime.Addr().String())
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)

	pc := testcluster.PrimeConfig(prime)
	pc.ServerAddress = proxy.Listen
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: pc})
	testcluster.Submit(t, prime, 10)
	testcluster.WaitAnswered(t, prime, 10, c)

	for _, dir := range []string{"upstream", "downstream"} {
		if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(
			`{"name":"hole_` + dir + `","type":"timeout","stream":"` + dir + `","attributes":{"timeout":0}}`)); err != nil {
			t.Fatal(err)
		}
	}
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
	for _, dir := range []string{"upstream", "downstream"} {
		if err := proxy.Toxics.RemoveToxic(t.Context(), "hole_"+dir); err != nil {
			t.Fatal(err)
		}
	}
	testcluster.WaitAnswered(t, prime, 20, c)
	c.Stop()
	testcluster.CheckReport(t, prime, 20)
}
