package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Config returns a configuration that serves and dials with the current
// files, as described in the package documentation. Each call returns a
// new *tls.Config sharing the Reloader.
func (r *Reloader) Config() *tls.Config {
	c := r.ClientConfig()
	if r.HasCert() {
		c.GetConfigForClient = r.serverConfig
	}
	return c
}

// ClientConfig returns a configuration for dialing only: it presents the
// certificate, if any, to servers that ask for one, and verifies servers
// against the CA bundle (or the system roots).
func (r *Reloader) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: r.clientCertificate,
		// Verified in VerifyConnection, against the current bundle.
		InsecureSkipVerify: true,
		VerifyConnection:   r.verifyServer,
	}
}

// ServerConfig returns a configuration for serving only. The Reloader
// must have a certificate (HasCert).
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: r.serverConfig}
}

// serverConfig is the serving side's configuration for one handshake.
func (r *Reloader) serverConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	m := r.current()
	if m.cert == nil {
		return nil, errors.New("tlsfiles: no certificate to serve")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*m.cert}}
	switch r.files.ClientAuth {
	case ClientAuthRequest:
		c.ClientAuth = tls.RequestClientCert
		c.VerifyConnection = r.verifyClient
	case ClientAuthRequire:
		c.ClientAuth = tls.RequireAnyClientCert
		c.VerifyConnection = r.verifyClient
	}
	return c, nil
}

func (r *Reloader) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if m := r.current(); m.cert != nil {
		return m.cert, nil
	}
	return new(tls.Certificate), nil // none: the server decides
}

// verifyServer verifies a server's chain and name against the current
// bundle, or the system roots without one.
func (r *Reloader) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsfiles: the server sent no certificate")
	}
	opts := x509.VerifyOptions{
		DNSName:       cs.ServerName,
		Roots:         r.current().pool, // nil: the system roots
		Intermediates: intermediates(cs.PeerCertificates),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// verifyClient verifies a client's chain, if it sent one, against the
// current bundle. ClientAuthRequire has crypto/tls refuse a client
// without one.
func (r *Reloader) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	opts := x509.VerifyOptions{
		Roots:         r.current().pool,
		Intermediates: intermediates(cs.PeerCertificates),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

func intermediates(chain []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range chain[1:] {
		p.AddCert(c)
	}
	return p
}

// parseCerts returns the certificates of a PEM bundle: at least one, and
// nothing in it but certificates.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q where a CERTIFICATE was expected", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return out, nil
}
