package tlsfiles_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gridmesh/gridmesh/internal/testcerts"
	"github.com/gridmesh/gridmesh/internal/tlsfiles"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// timeout bounds every wait of these tests.
const timeout = 10 * time.Second

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// server serves TLS handshakes on loopback with cfg until the test ends;
// each accepted connection completes its handshake, then closes.
func server(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(timeout))
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

// handshake dials addr with cfg and returns the handshake's error and
// the serial number of the certificate the server presented.
func handshake(addr string, cfg *tls.Config) (int64, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	// TLS 1.3: the server's verdict on our certificate comes with the
	// first read.
	if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func load(t *testing.T, f tlsfiles.Files, opts tlsfiles.Options) *tlsfiles.Reloader {
	t.Helper()
	r, err := tlsfiles.Load(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestMutualTLS: a server requiring client certificates accepts a client
// holding one from its CA, and refuses one without a certificate or with
// one from another CA; a client refuses a server its CA did not sign.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "ca")
	srv := ca.WriteFiles(t, dir, "server", "127.0.0.1")
	cli := ca.WriteFiles(t, dir, "client")
	addr := server(t, load(t, tlsfiles.Files{Cert: srv.Cert, Key: srv.Key, CA: srv.CA, ClientAuth: tlsfiles.ClientAuthRequire}, tlsfiles.Options{}).Config())

	good := load(t, tlsfiles.Files{Cert: cli.Cert, Key: cli.Key, CA: cli.CA}, tlsfiles.Options{}).Config()
	good.ServerName = "127.0.0.1"
	if _, err := handshake(addr, good); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	noCert := load(t, tlsfiles.Files{CA: cli.CA}, tlsfiles.Options{}).Config()
	noCert.ServerName = "127.0.0.1"
	if _, err := handshake(addr, noCert); err == nil {
		t.Fatal("client without a certificate was accepted")
	}
	other := testcerts.NewCA(t, "other")
	odir := t.TempDir()
	stranger := other.WriteFiles(t, odir, "client")
	sc := load(t, tlsfiles.Files{Cert: stranger.Cert, Key: stranger.Key, CA: cli.CA}, tlsfiles.Options{}).Config()
	sc.ServerName = "127.0.0.1"
	if _, err := handshake(addr, sc); err == nil {
		t.Fatal("client with another CA's certificate was accepted")
	}
	distrust := load(t, tlsfiles.Files{Cert: cli.Cert, Key: cli.Key, CA: stranger.CA}, tlsfiles.Options{}).Config()
	distrust.ServerName = "127.0.0.1"
	if _, err := handshake(addr, distrust); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client trusting another CA: %v, want a certificate error", err)
	}
	wrongName := load(t, tlsfiles.Files{Cert: cli.Cert, Key: cli.Key, CA: cli.CA}, tlsfiles.Options{}).Config()
	wrongName.ServerName = "gridmesh.invalid"
	if _, err := handshake(addr, wrongName); err == nil {
		t.Fatal("server accepted under a name its certificate does not carry")
	}
}

// TestRotation: certificate and CA files replaced on disk are served and
// trusted from the first handshake after CheckInterval, with no new
// Config; files that do not load keep the previous ones, logged once.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca1 := testcerts.NewCA(t, "ca1")
	srv := ca1.WriteFiles(t, dir, "server", "127.0.0.1")
	clk := &clock{t: time.Now()}
	var log bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &log}, nil))
	r := load(t, tlsfiles.Files{Cert: srv.Cert, Key: srv.Key, CA: srv.CA, ClientAuth: tlsfiles.ClientAuthRequest},
		tlsfiles.Options{CheckInterval: time.Minute, Now: clk.now, Logger: logger})
	addr := server(t, r.Config())
	trust := func(ca *testcerts.CA) *tls.Config {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "ca.crt"), ca.PEM, 0o600); err != nil {
			t.Fatal(err)
		}
		c := load(t, tlsfiles.Files{CA: filepath.Join(d, "ca.crt")}, tlsfiles.Options{}).Config()
		c.ServerName = "127.0.0.1"
		return c
	}
	first, err := handshake(addr, trust(ca1))
	if err != nil {
		t.Fatal(err)
	}

	// Rotate to a new CA, as cert-manager would: files replaced in place.
	ca2 := testcerts.NewCA(t, "ca2")
	ca2.WriteFiles(t, dir, "server", "127.0.0.1")
	if _, err := handshake(addr, trust(ca1)); err != nil {
		t.Fatalf("before CheckInterval, the old certificate is still served: %v", err)
	}
	clk.add(time.Minute)
	second, err := handshake(addr, trust(ca2))
	if err != nil {
		t.Fatalf("after rotation, a client trusting the new CA: %v", err)
	}
	if second == first {
		t.Fatal("the same certificate is served after rotation")
	}
	if _, err := handshake(addr, trust(ca1)); err == nil {
		t.Fatal("after rotation, a client trusting only the old CA was accepted")
	}

	// A half-written certificate: the last good one stays.
	if err := os.WriteFile(srv.Cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clk.add(time.Minute)
		if got, err := handshake(addr, trust(ca2)); err != nil || got != second {
			t.Fatalf("with a broken file: serial %d, %v; want the last good one, %d", got, err, second)
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(log.String(), "do not load"); n != 1 {
		t.Fatalf("broken files logged %d times, want once:\n%s", n, log.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestLoadErrors: each broken file is reported with its role, so that
// the configuration can name its field.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "ca")
	f := ca.WriteFiles(t, dir, "node", "127.0.0.1")
	other := ca.WriteFiles(t, t.TempDir(), "other", "127.0.0.1")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name  string
		files tlsfiles.Files
		role  string
	}{
		{"missing cert", tlsfiles.Files{Cert: missing, Key: f.Key}, "cert"},
		{"garbage cert", tlsfiles.Files{Cert: garbage, Key: f.Key}, "cert"},
		{"key is not the cert's", tlsfiles.Files{Cert: f.Cert, Key: other.Key}, "key"},
		{"key is a certificate", tlsfiles.Files{Cert: f.Cert, Key: f.Cert}, "key"},
		{"cert without key", tlsfiles.Files{Cert: f.Cert}, "key"},
		{"missing CA", tlsfiles.Files{CA: missing}, "ca"},
		{"CA is a key", tlsfiles.Files{CA: f.Key}, "ca"},
	} {
		_, err := tlsfiles.Load(c.files, tlsfiles.Options{})
		var fe *tlsfiles.FileError
		if !errors.As(err, &fe) || fe.Role != c.role {
			t.Errorf("%s: %v, want a FileError for the %s", c.name, err, c.role)
		}
	}
	for _, ca := range []string{"", f.CA} {
		_, err := tlsfiles.Load(tlsfiles.Files{Cert: f.Cert, Key: f.Key, CA: ca, ClientAuth: "always"}, tlsfiles.Options{})
		if !errors.Is(err, tlsfiles.ErrClientAuth) {
			t.Errorf("client_auth always: %v", err)
		}
	}
	if _, err := tlsfiles.Load(tlsfiles.Files{Cert: f.Cert, Key: f.Key, ClientAuth: tlsfiles.ClientAuthRequire}, tlsfiles.Options{}); !errors.Is(err, tlsfiles.ErrClientAuth) {
		t.Errorf("client_auth require without a CA: %v", err)
	}
}
