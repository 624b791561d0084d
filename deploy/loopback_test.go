package deploy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoopbackWalkthrough follows the README's "Deploying" walkthrough:
// deploy/loopback/certs.sh makes the certificates, then primesim, the
// gateway and a worker run as processes from the ready-made files,
// exactly, from the repository root, over mutual TLS; the gateway's
// /readyz says why it is not ready until the worker is, and a load is
// answered exactly once. Skipped without openssl, or when the
// walkthrough's fixed ports are taken.
func TestLoopbackWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("certs.sh needs openssl")
	}
	for _, a := range []string{"127.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7400", "127.0.0.1:7401", "127.0.0.1:7450"} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Skipf("the walkthrough's port %s is taken: %v", a, err)
		}
		ln.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = ".." // the repository root, as in the README
		cmd.Env = append(os.Environ(), "GRIDMESH="+binary, "GRIDMESH_JOURNAL="+filepath.Join(t.TempDir(), "j.db"))
		return cmd
	}
	if out, err := run("sh", "deploy/loopback/certs.sh").CombinedOutput(); err != nil {
		t.Fatalf("certs.sh: %v\n%s", err, out)
	}
	start := func(args ...string) (*exec.Cmd, *lockedBuffer, chan error) {
		t.Helper()
		cmd := run(binary, args...)
		out := new(lockedBuffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); err := <-done; done <- err })
		return cmd, out, done
	}
	c := "deploy/loopback/certs/"
	_, primeOut, primeDone := start("primesim", "-listen", "127.0.0.1:7450", "-api-key", "loopback-api-key",
		"-contracts", "loopback-contract", "-chain-id", "loopback-chain", "-tls-cert", c+"node.crt", "-tls-key", c+"node.key",
		"-tls-client-ca", c+"ca.crt", "-count", "1000", "-rate", "250", "-wait", "60s")
	gw, gwOut, gwDone := start("gateway", "-config", "deploy/loopback/gateway.yaml")
	ca, err := os.ReadFile("loopback/certs/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	client := newHTTPSClient(t, ca)
	readyz := func() string {
		resp, err := client.Get("https://127.0.0.1:7100/readyz")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: not in time (readyz %q)\ngateway:\n%s\nprimesim:\n%s", what, readyz(), gwOut.String(), primeOut.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitFor("gateway not ready for want of a worker", func() bool { return strings.HasPrefix(readyz(), "503 not ready: no worker ready") })
	wk, wkOut, wkDone := start("worker", "-config", "deploy/loopback/worker.yaml")
	waitFor("gateway ready", func() bool { return readyz() == "200 ready" })
	select {
	case err := <-primeDone:
		primeDone <- err
		if err != nil || !strings.Contains(primeOut.String(), "OK (every transaction answered exactly once)") {
			t.Fatalf("primesim: %v\n%s\ngateway:\n%s\nworker:\n%s", err, primeOut.String(), gwOut.String(), wkOut.String())
		}
	case <-ctx.Done():
		t.Fatal("the load was not answered in time")
	}
	for _, p := range []struct {
		cmd  *exec.Cmd
		done chan error
		out  *lockedBuffer
	}{{wk, wkDone, wkOut}, {gw, gwDone, gwOut}} {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-p.done:
			p.done <- err
			if err != nil {
				t.Errorf("%s: %v after SIGINT\n%s", p.cmd.Args[1], err, p.out.String())
			}
		case <-ctx.Done():
			t.Fatalf("%s did not stop", p.cmd.Args[1])
		}
	}
}

// newHTTPSClient trusts the PEM CA bundle ca.
func newHTTPSClient(t *testing.T, ca []byte) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in ca.crt")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}
