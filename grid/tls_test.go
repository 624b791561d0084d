package grid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for 127.0.0.1 signed by a fresh CA.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gridmesh test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a certificate for 127.0.0.1 usable by servers and clients.
func (ca *testCA) issue(t testing.TB, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "gridmesh node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSClientCertificates runs three nodes over wss:// whose servers
// demand a client certificate from the CA: nodes holding one form a full
// mesh; a node without one is refused by the TLS layer and keeps retrying
// without disturbing the others.
func TestTLSClientCertificates(t *testing.T) {
	ca := newTestCA(t)
	lns, _ := listen(t, 3)
	names := make([]string, len(lns))
	for i, ln := range lns {
		names[i] = "https://" + ln.Addr().String()
		if i == 2 {
			names[i] = "wss://" + ln.Addr().String()
		}
	}
	// The node without a client certificate must dial at least one peer:
	// swap it into place 2.
	for i := range names {
		if ShouldDial(names[i], names[(i+1)%3]) || ShouldDial(names[i], names[(i+2)%3]) {
			lns[i], lns[2] = lns[2], lns[i]
			names[i], names[2] = names[2], names[i]
			break
		}
	}
	nodes := make([]*node, len(lns))
	for i, ln := range lns {
		cert := ca.issue(t, int64(10+i))
		srvCfg := &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: ca.pool,
		}
		o := baseOptions(names[i], names)
		o.TLSConfig = &tls.Config{RootCAs: ca.pool}
		if i != 2 {
			o.TLSConfig.Certificates = []tls.Certificate{cert}
		}
		nodes[i] = startNode(t, tls.NewListener(ln, srvCfg), o)
	}
	ctx := testCtx(t)
	must(t, nodes[0].m.Connection(names[1]).WaitForConnect(ctx))
	must(t, nodes[0].call(ctx, names[1], "over tls"))
	must(t, nodes[1].call(ctx, names[0], "over tls"))

	// Every pair that node 2 dials stays down, with a TLS error recorded.
	dialed := 0
	for _, peer := range names[:2] {
		c := nodes[2].m.Connection(peer)
		if !c.dials {
			continue
		}
		dialed++
		waitFor(t, "a recorded TLS failure", func() bool {
			return strings.Contains(c.Stats().LastError, "certificate") || strings.Contains(c.Stats().LastError, "tls")
		})
		if c.State() == StateConnected {
			t.Fatalf("node without a client certificate connected to %s", peer)
		}
	}
	if dialed == 0 {
		t.Fatal("the node without a certificate dials no peer: the test checks nothing")
	}
}
