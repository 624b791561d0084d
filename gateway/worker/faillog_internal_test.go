package worker

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestFailLog: 50 failures at once give failLogBurst lines, each with
// its transaction's ID; the first line of the next window says how many
// were not logged.
func TestFailLog(t *testing.T) {
	var buf testutil.LogBuffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	var f failLog
	now := time.Unix(1000, 0)
	for i := range 50 {
		f.log(logger, &wire.TxResult{ID: "tx-" + string(rune('A'+i%26)) + strings.Repeat("x", i/26), Error: "contract failed: exit status 1"}, now)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != failLogBurst {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), failLogBurst, buf.String())
	}
	if !strings.Contains(lines[0], `level=WARN msg="worker: contract failed" transaction_id=tx-A err="contract failed: exit status 1"`) {
		t.Fatalf("line %q", lines[0])
	}
	f.log(logger, &wire.TxResult{ID: "late", TimedOut: true, Error: "contract killed: " + strings.Repeat("é", 300)}, now.Add(failLogWindow))
	all := strings.Split(strings.TrimSpace(buf.String()), "\n")
	last := all[len(all)-1]
	if !strings.Contains(last, `msg="worker: contract timed out" transaction_id=late`) || !strings.Contains(last, "not_logged=40") ||
		!strings.Contains(last, "…") || len(last) > 600 {
		t.Fatalf("line after the window: %q", last)
	}
}
