package deploy_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/internal/config"
)

// unitFile reads a systemd unit: section → key → values (a key may
// repeat).
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSystemdUnits: each unit runs the binary where the image and the
// README install it, with arguments it accepts; it stops with SIGTERM
// and gives the drain of the documented configuration time to finish; it
// runs as an unprivileged user.
func TestSystemdUnits(t *testing.T) {
	for _, u := range []struct {
		file, command, example string
	}{
		{"systemd/gridmesh-gateway.service", "gateway", "../internal/config/testdata/gateway.yaml"},
		{"systemd/gridmesh-worker.service", "worker", "../internal/config/testdata/worker.yaml"},
	} {
		unit := unitFile(t, u.file)
		svc := unit["Service"]
		if svc == nil || unit["Install"] == nil || unit["Unit"] == nil {
			t.Fatalf("%s: sections %v", u.file, keys(unit))
		}
		start := strings.Fields(one(t, u.file, svc, "ExecStart"))
		if len(start) < 2 || start[0] != imagePath || start[1] != u.command {
			t.Errorf("%s: ExecStart %q: want %s %s ...", u.file, start, imagePath, u.command)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		out, err := exec.CommandContext(ctx, binary, append(start[1:], "-h")...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s: the binary refuses %q: %v\n%s", u.file, start[1:], err, out)
		}
		var drain time.Duration
		if u.command == "gateway" {
			c, err := config.LoadGateway(u.example)
			if err != nil {
				t.Fatal(err)
			}
			drain = c.DrainTimeout
		} else {
			c, err := config.LoadWorker(u.example)
			if err != nil {
				t.Fatal(err)
			}
			drain = c.DrainTimeout
		}
		stop, err := time.ParseDuration(one(t, u.file, svc, "TimeoutStopSec"))
		if err != nil || stop <= drain {
			t.Errorf("%s: TimeoutStopSec %v does not outlast drain_timeout %v", u.file, stop, drain)
		}
		for k, want := range map[string]string{"KillSignal": "SIGTERM", "NoNewPrivileges": "yes", "Restart": "on-failure"} {
			if got := one(t, u.file, svc, k); got != want {
				t.Errorf("%s: %s=%s, want %s", u.file, k, got, want)
			}
		}
		if user := one(t, u.file, svc, "User"); user == "" || user == "root" {
			t.Errorf("%s: User=%q: want an unprivileged user", u.file, user)
		}
	}
}

// one returns the single value of key in a section.
func one(t *testing.T, file string, section map[string][]string, key string) string {
	t.Helper()
	if v := section[key]; len(v) == 1 {
		return v[0]
	}
	t.Errorf("%s: want exactly one %s, got %q", file, key, section[key])
	return ""
}
