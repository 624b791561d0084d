package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/internal/testcerts"
)

// TestStartupRefusals: a gateway or worker whose configuration cannot
// work refuses to start, exit 1, with a message naming the field; it
// does not log "ready" and fail every call later.
func TestStartupRefusals(t *testing.T) {
	dir := t.TempDir()
	certs := testcerts.NewCA(t, "ca").WriteFiles(t, dir, "node", "127.0.0.1")
	garbage := filepath.Join(dir, "garbage.pem")
	secret := filepath.Join(dir, "secret")
	for p, body := range map[string]string{garbage: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", secret: "s\n"} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addrs := freeAddrs(t, 2)
	plain := fmt.Sprintf("grid:\n  local: http://%s\n  hosts: [http://%s, http://%s]\n  secret_file: %s\n", addrs[0], addrs[0], addrs[1], secret)
	https := strings.ReplaceAll(plain, "http://", "https://")
	tlsSection := func(cert, key string) string {
		return fmt.Sprintf("  tls:\n    cert_file: %s\n    key_file: %s\n    ca_file: %s\n    client_auth: require\n", cert, key, certs.CA)
	}
	const prime = "server_address: 127.0.0.1:1\nchain_id: c\nsmart_contract_id: sc\napi_key: k\njournal_path: "
	journal := prime + filepath.Join(dir, "j.db") + "\n"
	for _, tc := range []struct {
		name, command, body, want string
	}{
		{"https hosts without tls", "worker", "command: [cat]\n" + https, "grid.tls is required: grid.hosts has TLS hosts"},
		{"tls for http hosts", "worker", "command: [cat]\n" + plain + tlsSection(certs.Cert, certs.Key), "grid.tls is set but no host in grid.hosts is https://"},
		{"certificate missing", "gateway", journal + https + tlsSection(filepath.Join(dir, "missing.crt"), certs.Key), "grid.tls.cert_file " + filepath.Join(dir, "missing.crt") + ": open"},
		{"certificate does not parse", "worker", "command: [cat]\n" + https + tlsSection(garbage, certs.Key), "grid.tls.cert_file " + garbage},
		{"key is not the certificate's", "worker", "command: [cat]\n" + https + tlsSection(certs.Cert, certs.CA), "grid.tls.key_file"},
		{"contract command not found", "worker", "command: [/opt/contract/missing, --serve]\n" + plain, "command: worker: contract command cannot be run: \"/opt/contract/missing\""},
		{"contract not in PATH", "worker", "command: [gridmesh-no-such-contract]\nmode: process\n" + plain, "executable file not found in $PATH"},
		{"Prime client certificate missing", "gateway", journal + "use_tls: true\ntls_client_cert_path: /nonexistent/gw.crt\ntls_client_key_path: " + certs.Key + "\n" + plain, "tls_client_cert_path /nonexistent/gw.crt"},
		{"Prime CA missing", "gateway", journal + "use_tls: true\ntls_cert_path: /nonexistent/ca.crt\n" + plain, "tls_cert_path /nonexistent/ca.crt"},
		{"secret file missing", "worker", "command: [cat]\n" + strings.Replace(plain, secret, "/run/secrets/none", 1), "grid.secret_file open /run/secrets/none"},
		{"ops token file missing", "gateway", journal + "ops_listen: 127.0.0.1:0\nops_token_file: /nonexistent/token\n" + plain, "ops_token_file open /nonexistent/token"},
		{"environment variable unset", "worker", "command: [cat]\n" + strings.Replace(plain, "local: http://"+addrs[0], "local: http://${GRIDMESH_TEST_UNSET_POD}:9000", 1), "grid.local environment variable GRIDMESH_TEST_UNSET_POD is not set"},
	} {
		p := filepath.Join(t.TempDir(), tc.command+".yaml")
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{tc.command, "-config", p}, &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), tc.want) || strings.Contains(errOut.String(), "ready") {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant exit 1 and %q", tc.name, code, errOut.String(), tc.want)
			continue
		}
		t.Logf("%s:\n    %s", tc.name, strings.TrimSpace(errOut.String()))
	}
}
