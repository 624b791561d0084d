package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Config returns a configuration that serves and dials with the files,
// as described in the package documentation. Each call returns a new
// *tls.Config sharing the Reloader.
func (r *Reloader) Config() *tls.Config {
	c := r.ClientConfig()
	if r.HasCert() {
		c.GetConfigForClient = r.serverConfig
	}
	return c
}

// ClientConfig returns a configuration for dialing only: it presents the
// current certificate, if any, to servers that ask for one, and verifies
// servers against the CA bundle as it is now (or the system roots).
func (r *Reloader) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              r.current().pool, // nil: the system roots
		GetClientCertificate: r.clientCertificate,
	}
}

// ServerConfig returns a configuration for serving only, offering the
// application protocols nextProtos in ALPN (gRPC needs "h2"). The
// Reloader must have a certificate (HasCert).
func (r *Reloader) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.handshakeConfig(nextProtos) }}
}

// serverConfig is the serving side's configuration for one handshake of
// Config's.
func (r *Reloader) serverConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	return r.handshakeConfig(nil)
}

// handshakeConfig is the serving side's configuration for one handshake:
// the current certificate, and client certificates verified against the
// current bundle.
func (r *Reloader) handshakeConfig(nextProtos []string) (*tls.Config, error) {
	m := r.current()
	if m.cert == nil {
		return nil, errors.New("tlsfiles: no certificate to serve")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*m.cert}, ClientCAs: m.pool, NextProtos: nextProtos}
	switch r.files.ClientAuth {
	case ClientAuthRequest:
		c.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func (r *Reloader) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if m := r.current(); m.cert != nil {
		return m.cert, nil
	}
	return new(tls.Certificate), nil // none: the server decides
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
