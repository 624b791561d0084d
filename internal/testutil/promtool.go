package testutil

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CheckPromtool runs `promtool check metrics` on an exposition and fails
// the test on any complaint. promtool comes from Debian's prometheus
// package (.ci/run puts it on PATH); where it is missing, the test logs
// that it skipped the check, unless CI is set, where it fails.
func CheckPromtool(tb testing.TB, exposition string) {
	tb.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("promtool not found on PATH; .ci/run installs it")
		}
		tb.Log("promtool not found on PATH: promtool check metrics skipped")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		tb.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	tb.Log("promtool check metrics: clean")
}
