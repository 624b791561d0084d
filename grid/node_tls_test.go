package grid

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
)

// TestNodeServesTLS: two nodes started with StartNode on https:// URLs
// serve TLS from their TLSConfig, demand each other's client
// certificates, and call each other; the grid port serves the grid
// route alone. A node whose https:// Local has no certificate to serve
// does not start.
func TestNodeServesTLS(t *testing.T) {
	ca := newTestCA(t)
	lns, _ := listen(t, 2)
	names := []string{"https://" + lns[0].Addr().String(), "https://" + lns[1].Addr().String()}
	nodes := make([]*Node, 2)
	for i, ln := range lns {
		o := baseOptions(names[i], names)
		o.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{ca.issue(t, int64(20+i))},
			RootCAs:      ca.pool, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert,
		}
		n, err := StartNode(context.Background(), ln, o)
		must(t, err)
		t.Cleanup(func() { _ = n.Close() })
		must(t, n.Manager.RegisterSingleHandler(hWho, func(_ context.Context, p []byte) ([]byte, error) {
			return append([]byte(o.Local+":"), p...), nil
		}))
		nodes[i] = n
	}
	ctx := testCtx(t)
	for i, n := range nodes {
		c := n.Manager.Connection(names[1-i])
		must(t, c.WaitForConnect(ctx))
		out, err := c.Request(ctx, hWho, []byte("tls"))
		must(t, err)
		if want := names[1-i] + ":tls"; string(out) != want {
			t.Fatalf("answer %q, want %q", out, want)
		}
	}

	// Plain HTTP on the TLS port is refused; a TLS client without a
	// certificate is refused by the handshake; stats are not served here.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, 30)},
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(names[0] + DefaultStatsPath)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET %s on the grid port: %d, want 404", DefaultStatsPath, resp.StatusCode)
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	defer noCert.CloseIdleConnections()
	if resp, err := noCert.Get(names[0] + DefaultRoutePath); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got HTTP %d", resp.StatusCode)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	local := "https://" + ln.Addr().String()
	_, err = StartNode(context.Background(), ln, baseOptions(local, []string{local}))
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("https:// Local without a certificate: %v, want ErrInvalidOptions", err)
	}
	t.Log(err)
}
