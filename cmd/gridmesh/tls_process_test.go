package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testcerts"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// Secrets of the mutual-TLS test, looked for in every log and answer.
const (
	tlsGridSecret = "grid-secret-5f1e"
	tlsAPIKey     = "prime-api-key-9c2d"
	tlsOpsToken   = "ops-token-77aa"
)

// opsClient fetches from operations ports, trusting the test's CA.
type opsClient struct {
	http *http.Client
}

func newOpsClient(t *testing.T, ca *testcerts.CA) *opsClient {
	c := &opsClient{http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
	}}}
	t.Cleanup(c.http.CloseIdleConnections)
	return c
}

// get returns the status and body of url, with the bearer token if set.
func (c *opsClient) get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(body)
}

// waitStatus polls url until it answers want with a body holding
// substr, and returns the body.
func (c *opsClient) waitStatus(t *testing.T, ctx context.Context, url, token string, want int, substr string, why func() string) string {
	t.Helper()
	for {
		code, body := c.get(t, url, token)
		if code == want && strings.Contains(body, substr) {
			return body
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never answered %d (last %d %q)\n%s", url, want, code, body, why())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tlsCluster writes the files of a gateway and workers on https:// grid
// hosts with mutual TLS, secrets in files, and the gateway's client
// certificate towards a Prime served over mutual TLS too.
type tlsCluster struct {
	*testCluster
	ca      *testcerts.CA
	prime   testcerts.Files // Prime's server certificate
	gateway testcerts.Files // the gateway's client certificate towards Prime
}

func newTLSCluster(t *testing.T, workers int) *tlsCluster {
	c := &tlsCluster{testCluster: newTestCluster(t, workers), ca: testcerts.NewCA(t, "gridmesh test CA")}
	for i, n := range c.names {
		c.names[i] = strings.Replace(n, "http://", "https://", 1)
	}
	node := c.ca.WriteFiles(t, c.dir, "node", "127.0.0.1")
	c.prime = c.ca.WriteFiles(t, c.dir, "prime", "127.0.0.1")
	c.gateway = c.ca.WriteFiles(t, c.dir, "gateway-client")
	for name, v := range map[string]string{"grid-secret": tlsGridSecret, "api-key": tlsAPIKey, "ops-token": tlsOpsToken} {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.grid = fmt.Sprintf("grid:\n  hosts: [%s]\n  secret_file: %s\n  tls:\n    cert_file: %s\n    key_file: %s\n    ca_file: %s\n    client_auth: require\n",
		strings.Join(c.names, ", "), filepath.Join(c.dir, "grid-secret"), node.Cert, node.Key, node.CA)
	return c
}

// gatewayConfig is the gateway's file: Prime over mutual TLS, the API key
// and the operations token from files, the operations port over HTTPS.
func (c *tlsCluster) gatewayConfig(primeAddr string) string {
	return c.write("gateway.yaml", 0, fmt.Sprintf(`server_address: %s
chain_id: c
smart_contract_id: sc
api_key_file: %s
use_tls: true
tls_cert_path: %s
tls_client_cert_path: %s
tls_client_key_path: %s
reconnect_delay_seconds: 1
journal_path: %s
ops_token_file: %s
ops_tls: true
`, primeAddr, filepath.Join(c.dir, "api-key"), c.prime.CA,
		c.gateway.Cert, c.gateway.Key, c.journal(), filepath.Join(c.dir, "ops-token")))
}

// TestProcessesMutualTLS runs Prime (primesim), the gateway and two
// workers as processes: the grid over https:// with mutual TLS, the
// gateway presenting a client certificate to Prime, which demands one;
// secrets from files. Every transaction is answered exactly once. The
// gateway's /readyz says why it is not ready until a worker is; its
// /metrics pass promtool and answer 401 without the token; no secret
// shows in any log, stats or metrics.
func TestProcessesMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	c := newTLSCluster(t, 2)
	primeAddr := freeAddr(t)
	prime := startChild(t, ctx, "primesim", "-listen", primeAddr, "-api-key", tlsAPIKey, "-contracts", "sc", "-chain-id", "c",
		"-count", fmt.Sprint(n), "-wait", "50s", "-tls-cert", c.prime.Cert, "-tls-key", c.prime.Key, "-tls-client-ca", c.prime.CA)
	gw := startChild(t, ctx, "gateway", "-config", c.gatewayConfig(primeAddr), "-log-format", "json")
	client := newOpsClient(t, c.ca)
	gwOps := "https://" + c.ops[0]
	logs := func() string { return "gateway:\n" + gw.stderr.String() + "\nprimesim:\n" + prime.stderr.String() }

	// Not ready: Prime's stream is up, but no worker is.
	notReady := client.waitStatus(t, ctx, gwOps+ops.ReadyPath, "", http.StatusServiceUnavailable, "no worker ready", logs)
	if code, body := client.get(t, gwOps+ops.HealthPath, ""); code != 200 || body != "ok\n" {
		t.Fatalf("gateway /healthz: %d %q", code, body)
	}
	var workers []*child
	for i := 1; i <= 2; i++ {
		workers = append(workers, startChild(t, ctx, "worker", "-config",
			c.workerConfig(i, "command: [sh, -c, 'cat >/dev/null; echo \"{\\\"ok\\\":true}\"']\ncapacity: 8\n")))
	}
	ready := client.waitStatus(t, ctx, gwOps+ops.ReadyPath, "", http.StatusOK, "ready", logs)
	t.Logf("gateway /readyz before the workers: %q; after: %q", notReady, ready)
	for i := 1; i <= 2; i++ {
		client.waitStatus(t, ctx, "http://"+c.ops[i]+ops.ReadyPath, "", http.StatusOK, "ready", logs)
	}

	// primesim exits 0 once every transaction was answered exactly once.
	if err := prime.wait(t); err != nil {
		t.Fatalf("primesim: %v\n%s", err, logs())
	}
	if !strings.Contains(prime.stderr.String(), "gRPC over TLS, client certificates require") {
		t.Errorf("primesim did not serve mutual TLS:\n%s", prime.stderr.String())
	}

	code, _ := client.get(t, gwOps+ops.MetricsPath, "")
	if code != http.StatusUnauthorized {
		t.Errorf("gateway /metrics without the token: %d, want 401", code)
	}
	// Prime may have the last answer, and primesim have exited, before
	// the gateway counted it (a send counts once Send returned).
	client.waitStatus(t, ctx, gwOps+ops.MetricsPath, tlsOpsToken, http.StatusOK, fmt.Sprintf("gridmesh_gateway_sent_total %d\n", n), logs)
	code, metrics := client.get(t, gwOps+ops.MetricsPath, tlsOpsToken)
	if code != 200 || !strings.Contains(metrics, fmt.Sprintf("gridmesh_gateway_sent_total %d", n)) ||
		!strings.Contains(metrics, "gridmesh_peer_up{peer=\""+c.names[1]+"\"} 1") || !strings.Contains(metrics, "gridmesh_build_info{") ||
		!strings.Contains(metrics, "gridmesh_rpc_duration_seconds_bucket{") || !strings.Contains(metrics, "gridmesh_peer_reconnects_total{") {
		t.Errorf("gateway /metrics: %d\n%s", code, metrics)
	}
	testutil.CheckPromtool(t, metrics)
	_, wkMetrics := client.get(t, "http://"+c.ops[1]+ops.MetricsPath, "")
	testutil.CheckPromtool(t, wkMetrics)
	_, stats := client.get(t, gwOps+ops.StatsPath, tlsOpsToken)
	_, wkStats := client.get(t, "http://"+c.ops[1]+ops.StatsPath, "")

	gw.term(t, "gateway")
	for _, w := range workers {
		w.term(t, "worker")
	}
	everything := gw.stderr.String() + workers[0].stderr.String() + workers[1].stderr.String() + metrics + wkMetrics + stats + wkStats
	for _, secret := range []string{tlsGridSecret, tlsAPIKey, tlsOpsToken} {
		if strings.Contains(everything, secret) {
			t.Errorf("secret %q shows in the logs, stats or metrics", secret)
		}
	}
	if !strings.Contains(gw.stderr.String(), `"msg":"gateway: starting"`) {
		t.Errorf("gateway log is not JSON:\n%s", gw.stderr.String())
	}
}
