package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/internal/config"
)

func writeFile(tb testing.TB, body string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

const gridYAML = `
grid:
  local: http://127.0.0.1:9000
  hosts: [http://127.0.0.1:9000, http://127.0.0.1:9001]
  secret: s
`

const primeYAML = `
server_address: 127.0.0.1:50051
chain_id: c
smart_contract_id: sc
api_key: k
`

func TestGatewayConfig(t *testing.T) {
	cfg, err := config.LoadGateway(writeFile(t, primeYAML+gridYAML+"journal_retention: 2h\nmax_reconnect_attempts: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIKey != "k" || cfg.ReconnectDelaySeconds != 3 || cfg.MaxBackoffSeconds != 120 || cfg.MaxReconnectAttempts != 5 ||
		cfg.JournalRetention != 2*time.Hour || cfg.TransactionTimeout != time.Minute || cfg.Grid.Secret != "s" ||
		cfg.MaxResultBytes != gateway.DefaultMaxResultBytes || cfg.MaxResultBytes >= 4<<20 {
		t.Fatalf("config %+v", cfg)
	}
	if addr, _ := cfg.Grid.ListenAddr(); addr != "127.0.0.1:9000" {
		t.Fatalf("listen %q", addr)
	}
}

func TestConfigErrors(t *testing.T) {
	drop := func(s, line string) string { return strings.Replace(s, line+"\n", "", 1) }
	cases := []struct {
		name, body, want string
		worker           bool
	}{
		{"no api_key", drop(primeYAML, "api_key: k") + gridYAML, "api_key is required", false},
		{"no chain_id", drop(primeYAML, "chain_id: c") + gridYAML, "chain_id is required", false},
		{"no server_address", drop(primeYAML, "server_address: 127.0.0.1:50051") + gridYAML, "server_address is required", false},
		{"no smart_contract_id", drop(primeYAML, "smart_contract_id: sc") + gridYAML, "smart_contract_id is required", false},
		{"unknown field", primeYAML + gridYAML + "num_wokers: 3\n", "field num_wokers not found", false},
		{"bad method path", primeYAML + gridYAML + "method_path: Run\n", "method_path", false},
		{"no grid", primeYAML, "grid.local is required", false},
		{"local not in hosts", primeYAML + strings.Replace(gridYAML, "local: http://127.0.0.1:9000", "local: http://x:1", 1), "not one of grid.hosts", false},
		{"no secret", primeYAML + drop(gridYAML, "  secret: s"), "grid.secret is required", false},
		{"bad duration", primeYAML + gridYAML + "drain_timeout: soon\n", "soon", false},
		{"negative pending marks", primeYAML + gridYAML + "journal_max_pending_marks: -1\n", "journal_max_pending_marks", false},
		{"negative max result", primeYAML + gridYAML + "max_result_bytes: -1\n", "max_result_bytes -1 is less than 1024", false},
		{"tiny max result", primeYAML + gridYAML + "max_result_bytes: 100\n", "max_result_bytes 100 is less than 1024", false},
		{"empty", "", "is empty", false},
		{"worker no command", gridYAML, "command is required", true},
		{"worker unknown field", gridYAML + "command: [cat]\ncapacty: 3\n", "field capacty not found", true},
		{"worker negative drain", gridYAML + "command: [cat]\ndrain_timeout: -1s\n", "drain_timeout", true},
		{"negative home wait", primeYAML + gridYAML + "home_wait: -1s\n", "home_wait must not be negative", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.worker {
				_, err = config.LoadWorker(writeFile(t, tc.body))
			} else {
				_, err = config.LoadGateway(writeFile(t, tc.body))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrConfig) {
				t.Fatalf("err %v, want ErrConfig containing %q", err, tc.want)
			}
		})
	}
}

func TestWorkerConfig(t *testing.T) {
	cfg, err := config.LoadWorker(writeFile(t, gridYAML+"command: [cat, -]\ncapacity: 3\noutput_to_chain: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	ec := cfg.Exec()
	if cfg.Capacity != 3 || ec.OutputToChain || len(ec.Command) != 2 || ec.MaxLogBytes != 64<<10 || cfg.DrainTimeout != 10*time.Second {
		t.Fatalf("config %+v exec %+v", cfg, ec)
	}
	cfg, err = config.LoadWorker(writeFile(t, gridYAML+"command: [cat]\ndrain_timeout: 2m\n"))
	if err != nil || cfg.DrainTimeout != 2*time.Minute {
		t.Fatalf("drain_timeout: %v, %+v", err, cfg)
	}
}

// TestExampleConfigs: the documented example files load.
func TestExampleConfigs(t *testing.T) {
	gw, err := config.LoadGateway("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if gw.JournalMaxPendingMarks != 262144 {
		t.Fatalf("journal_max_pending_marks: %d", gw.JournalMaxPendingMarks)
	}
	if gw.MaxResultBytes != gateway.DefaultMaxResultBytes {
		t.Fatalf("max_result_bytes: %d", gw.MaxResultBytes)
	}
	if gw.HomeWait != 5*time.Second {
		t.Fatalf("home_wait: %v", gw.HomeWait)
	}
	if _, err := config.LoadWorker("testdata/worker.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerProcessConfig(t *testing.T) {
	cfg, err := config.LoadWorker(writeFile(t, gridYAML+
		"mode: process\ncommand: [python3, main.py]\ntimeout: 2s\nprocess:\n  processes: 2\n  in_flight: 4\n  restart_delay: 50ms\n  env: [A=1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.ProcessConfig()
	if cfg.Mode != "process" || cfg.Capacity != 8 || pc.Processes != 2 || pc.InFlight != 4 || pc.RestartDelay != 50*time.Millisecond ||
		pc.Timeout != 2*time.Second || pc.MaxLogBytes != 64<<10 || len(pc.Env) != 1 || len(pc.Command) != 2 {
		t.Fatalf("config %+v process %+v", cfg, pc)
	}
	cfg, err = config.LoadWorker(writeFile(t, gridYAML+"mode: process\ncommand: [x]\ncapacity: 6\nprocess:\n  processes: 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pc := cfg.ProcessConfig(); cfg.Capacity != 6 || pc.InFlight != 2 {
		t.Fatalf("capacity %d, process %+v", cfg.Capacity, pc)
	}
	if err := cfg.Validate(); err != nil { // Validate twice
		t.Fatal(err)
	}
	if _, err := config.LoadWorker("testdata/worker-process.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerProcessConfigErrors(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown mode", "mode: proces\ncommand: [x]\n", `mode "proces" is neither`},
		{"process section in mode exec", "command: [x]\nprocess:\n  processes: 2\n", "process applies to mode"},
		{"output_to_chain", "mode: process\ncommand: [x]\noutput_to_chain: true\n", "output_to_chain applies to mode"},
		{"max_result_bytes", "mode: process\ncommand: [x]\nmax_result_bytes: 10\n", "max_result_bytes applies to mode"},
		{"unknown field", "mode: process\ncommand: [x]\nprocess:\n  in_flght: 3\n", "field in_flght not found"},
		{"negative", "mode: process\ncommand: [x]\nprocess:\n  in_flight: -1\n", "must not be negative"},
		{"capacity too large", "mode: process\ncommand: [x]\ncapacity: 9\nprocess:\n  in_flight: 4\n", "capacity 9 is more than"},
		{"no command", "mode: process\n", "command is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.LoadWorker(writeFile(t, gridYAML+tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrConfig) {
				t.Fatalf("err %v, want ErrConfig containing %q", err, tc.want)
			}
		})
	}
}
