package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/internal/config"
)

// TestEnvironment: ${NAME} and ${NAME:-default} in values come from the
// environment, typed after substitution; grid.local from the pod's name.
func TestEnvironment(t *testing.T) {
	t.Setenv("POD_NAME", "gridmesh-worker-1")
	t.Setenv("GRID_SECRET", "s3cr3t: with # yaml")
	t.Setenv("CAPACITY", "7")
	t.Setenv("EMPTY", "")
	cfg, err := config.LoadWorker(writeFile(t, `
grid:
  local: http://${POD_NAME}.gridmesh.default.svc:9000
  hosts: ["http://gridmesh-worker-{0...2}.gridmesh.default.svc:9000"]
  secret: ${GRID_SECRET}
  listen: ${LISTEN:-0.0.0.0:9000}
capacity: ${CAPACITY}
command: [sh, -c, "echo $$HOME ${EMPTY:-dflt} $1"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"http://gridmesh-worker-0.gridmesh.default.svc:9000",
		"http://gridmesh-worker-1.gridmesh.default.svc:9000",
		"http://gridmesh-worker-2.gridmesh.default.svc:9000",
	}
	if cfg.Grid.Local != want[1] || !slices.Equal(cfg.Grid.Hosts, want) || cfg.Grid.Secret != "s3cr3t: with # yaml" ||
		cfg.Grid.Listen != "0.0.0.0:9000" || cfg.Capacity != 7 || cfg.Command[2] != "echo $HOME dflt $1" {
		t.Fatalf("config %+v", cfg)
	}

	_, err = config.LoadWorker(writeFile(t, gridYAML+"command: [x]\ndir: ${NOT_SET_ANYWHERE}\n"))
	if !errors.Is(err, config.ErrConfig) || !strings.Contains(err.Error(), "dir environment variable NOT_SET_ANYWHERE is not set") {
		t.Fatalf("unset variable: %v", err)
	}
	_, err = config.LoadWorker(writeFile(t, gridYAML+"command: [x]\ncapacity: ${CAPACITY}x\n"))
	if !errors.Is(err, config.ErrConfig) {
		t.Fatalf("a number that is not: %v", err)
	}
}

// TestEllipsis: the ellipsis form of hosts, padded and multiplied.
func TestEllipsis(t *testing.T) {
	cfg, err := config.LoadWorker(writeFile(t, `
grid:
  local: http://n02-b.x:9000
  hosts: [http://gw.x:9000, "http://n{01...03}-{a...b}.x:9000"]
  secret: s
command: [x]
`))
	if err == nil || !strings.Contains(err.Error(), "grid.hosts") {
		t.Fatalf("letters in an ellipsis: %v, %+v", err, cfg)
	}
	cfg, err = config.LoadWorker(writeFile(t, `
grid:
  local: http://n02-1.x:9000
  hosts: [http://gw.x:9000, "http://n{01...03}-{0...1}.x:9000"]
  secret: s
command: [x]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://gw.x:9000", "http://n01-0.x:9000", "http://n01-1.x:9000", "http://n02-0.x:9000",
		"http://n02-1.x:9000", "http://n03-0.x:9000", "http://n03-1.x:9000"}
	if !slices.Equal(cfg.Grid.Hosts, want) {
		t.Fatalf("hosts %q, want %q", cfg.Grid.Hosts, want)
	}
	for _, bad := range []string{"http://n{3...1}.x:9000", "http://n{0...99999}.x:9000"} {
		_, err := config.LoadWorker(writeFile(t, "grid:\n  local: http://n1.x:9000\n  hosts: [\""+bad+"\"]\n  secret: s\ncommand: [x]\n"))
		if err == nil || !strings.Contains(err.Error(), "grid.hosts") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestSecretFiles: grid.secret_file, api_key_file and ops_token_file
// are read (a trailing newline dropped); a secret given twice, or a
// missing or empty file, is refused naming the field.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret, key, token, empty := write("secret", "grid-s\n"), write("key", "prime-k\n"), write("token", "tok\n"), write("empty", "\n")
	gridWithFile := strings.Replace(gridYAML, "secret: s", "secret_file: "+secret, 1)
	primeWithFile := strings.Replace(primeYAML, "api_key: k", "api_key_file: "+key, 1)
	cfg, err := config.LoadGateway(writeFile(t, primeWithFile+gridWithFile+"ops_listen: 127.0.0.1:9100\nops_token_file: "+token+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Grid.Secret != "grid-s" || cfg.APIKey != "prime-k" || cfg.OpsToken != "tok" {
		t.Fatalf("secrets %q %q %q", cfg.Grid.Secret, cfg.APIKey, cfg.OpsToken)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"both secrets", primeYAML + strings.Replace(gridYAML, "secret: s", "secret: s\n  secret_file: "+secret, 1), "grid.secret_file and grid.secret are both set"},
		{"both api keys", primeYAML + "api_key_file: " + key + "\n" + gridYAML, "api_key_file and api_key are both set"},
		{"missing secret file", primeYAML + strings.Replace(gridYAML, "secret: s", "secret_file: /nonexistent/secret", 1), "grid.secret_file open /nonexistent/secret"},
		{"empty api key file", strings.Replace(primeYAML, "api_key: k", "api_key_file: "+empty, 1) + gridYAML, "api_key_file " + empty + " is empty"},
		{"token without port", primeYAML + gridYAML + "ops_token_file: " + token + "\n", "ops_token_file is set but ops_listen is not"},
		{"missing token file", primeYAML + gridYAML + "ops_listen: :9100\nops_token_file: /nonexistent/token\n", "ops_token_file open /nonexistent/token"},
		{"bad ops_listen", primeYAML + gridYAML + "ops_listen: 9100\n", "ops_listen"},
		{"pprof without port", primeYAML + gridYAML + "ops_pprof: true\n", "ops_pprof is set but ops_listen is not"},
	} {
		_, err := config.LoadGateway(writeFile(t, tc.body))
		if !errors.Is(err, config.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrConfig containing %q", tc.name, err, tc.want)
		}
	}
}
