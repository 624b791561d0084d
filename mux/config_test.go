package mux_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/mux"
)

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []mux.Config{{MaxMessageSize: -1}, {MaxMessageSize: 2 << 30}, {MaxInFlight: -5}, {HelloTimeout: -time.Second}} {
		a, b := transports[0].pair(t)
		_, err := mux.NewSession(a, nil, cfg)
		if err == nil || !strings.Contains(err.Error(), "mux: config:") {
			t.Fatalf("%+v: got %v", cfg, err)
		}
		a.Close()
		b.Close()
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (mux.Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	for _, c := range []mux.Config{{MaxMessageSize: -1}, {MaxMessageSize: 1<<30 + 1}, {MaxStreams: -1}, {CloseTimeout: -time.Second},
		{MaxStreamBytes: -1}, {ChunkTimeout: -time.Second}, {InlineBudget: -time.Microsecond},
		// A byte bound must hold a message of MaxMessageSize.
		{MaxMessageSize: 1 << 20, MaxStreamBytes: 1 << 20}, {MaxMessageSize: 1 << 20, MaxRequestBytes: 1 << 20},
		{MaxMessageSize: 1 << 20, MaxResponseBytes: 1<<20 - 1}, {MaxRequestBytes: 1 << 60}} {
		err := c.Validate()
		if err == nil {
			t.Fatalf("%+v accepted", c)
		}
		if _, serr := mux.NewSession(nil, nil, c); serr == nil || serr.Error() != err.Error() {
			t.Fatalf("Validate says %v, NewSession %v", err, serr)
		}
	}
}

// TestConfigMemoryBound: every byte bound has a finite default, which grows
// with MaxMessageSize, and MemoryBound is the formula of doc.go for them.
func TestConfigMemoryBound(t *testing.T) {
	const mib = 1 << 20
	zero := mux.Config{}.MemoryBound()
	if zero <= 0 || zero > 2<<30 {
		t.Fatalf("the zero Config's bound is %d bytes, want a finite one under 2 GiB", zero)
	}
	// Each byte bound's default is max(64 MiB, 2 × MaxMessageSize).
	small := mux.Config{MaxMessageSize: mib}.MemoryBound()
	large := mux.Config{MaxMessageSize: 256 * mib}.MemoryBound()
	if large-small < 3*2*256*mib-3*64*mib {
		t.Fatalf("bounds %d and %d: the byte bounds do not follow MaxMessageSize", small, large)
	}
	// By hand, for a config with a stream reserve of 64 KiB.
	c := mux.Config{MaxMessageSize: mib, MaxConcurrent: 10, MaxStreams: 20, MaxQueuedBytes: mib,
		MaxRequestBytes: 8 * mib, MaxResponseBytes: 4 * mib, MaxStreamBytes: 16 * mib}
	want := int64(2*(4*mib+mib+64<<10) + 68<<10 + 10*(64<<10+8<<10) + 8*mib*3/2 + mib + 4*mib + (16*mib+2*20*64<<10)*3/2 + 2*20*16<<10)
	if got := c.MemoryBound(); got != want {
		t.Fatalf("MemoryBound %d, want %d", got, want)
	}
	if got := (mux.Config{MaxStreams: -1}).MemoryBound(); got != -1 {
		t.Fatalf("an invalid config's bound is %d, want -1", got)
	}
}
