package gateway

import (
	"strings"
	"testing"
)

// TestMetricsLabelEscaping: a worker's name is escaped as the text
// format requires (backslash, quote, newline).
func TestMetricsLabelEscaping(t *testing.T) {
	var b strings.Builder
	writeMetrics(&b, NodeStats{Dispatch: &DispatchStats{Workers: []WorkerStats{{Host: "a\"b\\c\nd", Up: true}}}})
	if want := `gridmesh_gateway_worker_up{worker="a\"b\\c\nd"} 1` + "\n"; !strings.Contains(b.String(), want) {
		t.Fatalf("want %q in:\n%s", want, b.String())
	}
}
