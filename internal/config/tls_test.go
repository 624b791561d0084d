package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/internal/config"
	"github.com/gridmesh/gridmesh/internal/testcerts"
)

const tlsGridYAML = `
grid:
  local: https://127.0.0.1:9000
  hosts: [https://127.0.0.1:9000, https://127.0.0.1:9001]
  secret: s
`

// TestGridTLS: a grid.tls section loads its files into the options,
// which then serve and dial TLS.
func TestGridTLS(t *testing.T) {
	f := testcerts.NewCA(t, "ca").WriteFiles(t, t.TempDir(), "node", "127.0.0.1")
	cfg, err := config.LoadWorker(writeFile(t, tlsGridYAML+"  tls:\n    cert_file: "+f.Cert+"\n    key_file: "+f.Key+
		"\n    ca_file: "+f.CA+"\n    client_auth: require\ncommand: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := cfg.Grid.Options(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.TLSConfig == nil || o.TLSConfig.GetConfigForClient == nil || o.TLSConfig.RootCAs == nil {
		t.Fatalf("TLS options %+v", o.TLSConfig)
	}
}

// TestTLSRefusals: each way a TLS configuration is wrong stops the
// start, naming the field.
func TestTLSRefusals(t *testing.T) {
	dir := t.TempDir()
	f := testcerts.NewCA(t, "ca").WriteFiles(t, dir, "node", "127.0.0.1")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section := func(cert, key, ca, auth string) string {
		return "  tls:\n    cert_file: " + cert + "\n    key_file: " + key + "\n    ca_file: " + ca + "\n    client_auth: " + auth + "\n"
	}
	for _, tc := range []struct{ name, body, want string }{
		{"https hosts without tls", tlsGridYAML, "grid.tls is required: grid.hosts has TLS hosts (https://127.0.0.1:9000, https://127.0.0.1:9001)"},
		{"tls with http hosts", gridYAML + section(f.Cert, f.Key, f.CA, "off"), "grid.tls is set but no host in grid.hosts is https:// or wss://"},
		{"missing cert", tlsGridYAML + section(filepath.Join(dir, "nope.crt"), f.Key, f.CA, "off"), "grid.tls.cert_file " + filepath.Join(dir, "nope.crt") + ": open"},
		{"cert not PEM", tlsGridYAML + section(garbage, f.Key, f.CA, "off"), "grid.tls.cert_file " + garbage},
		{"key not the cert's", tlsGridYAML + section(f.Cert, f.Cert, f.CA, "off"), "grid.tls.key_file " + f.Cert},
		{"missing ca", tlsGridYAML + section(f.Cert, f.Key, filepath.Join(dir, "nope-ca.crt"), "off"), "grid.tls.ca_file"},
		{"bad client_auth", tlsGridYAML + section(f.Cert, f.Key, f.CA, "always"), "grid.tls.client_auth"},
		{"require without ca", tlsGridYAML + section(f.Cert, f.Key, `""`, "require"), "grid.tls.client_auth"},
		{"no cert", tlsGridYAML + "  tls:\n    ca_file: " + f.CA + "\n", "grid.tls.cert_file is required"},
		{"prime client cert without use_tls", primeYAML + gridYAML + "tls_client_cert_path: " + f.Cert + "\ntls_client_key_path: " + f.Key + "\n", "tls_client_cert_path is set but use_tls is false"},
		{"prime client cert missing", primeYAML + gridYAML + "use_tls: true\ntls_client_cert_path: /nonexistent.crt\ntls_client_key_path: " + f.Key + "\n", "tls_client_cert_path /nonexistent.crt"},
		{"prime client key alone", primeYAML + gridYAML + "use_tls: true\ntls_client_key_path: " + f.Key + "\n", "tls_client_cert_path"},
		{"prime CA missing", primeYAML + gridYAML + "use_tls: true\ntls_cert_path: /nonexistent-ca.crt\n", "tls_cert_path /nonexistent-ca.crt"},
		{"prime CA not PEM", primeYAML + gridYAML + "use_tls: true\ntls_cert_path: " + garbage + "\n", "tls_cert_path " + garbage},
	} {
		worker := !strings.Contains(tc.body, "server_address")
		var err error
		if worker {
			_, err = config.LoadWorker(writeFile(t, tc.body+"command: [x]\n"))
		} else {
			_, err = config.LoadGateway(writeFile(t, tc.body))
		}
		if !errors.Is(err, config.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant ErrConfig containing %q", tc.name, err, tc.want)
		}
	}
	cfg, err := config.LoadGateway(writeFile(t, primeYAML+gridYAML+"use_tls: true\ntls_cert_path: "+f.CA+
		"\ntls_client_cert_path: "+f.Cert+"\ntls_client_key_path: "+f.Key+"\n"))
	if err != nil || cfg.TLSClientCertPath != f.Cert {
		t.Fatalf("Prime client certificate: %v", err)
	}
}
