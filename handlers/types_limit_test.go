package handlers_test

import (
	"errors"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/gridmesh/gridmesh/handlers"
)

// TestMSSMapBound: an MSS whose header claims 2^32-1 entries is refused
// before the map is allocated.
func TestMSSMapBound(t *testing.T) {
	var m handlers.MSS
	if _, err := m.UnmarshalMsg([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}); !errors.Is(err, msgp.ErrLimitExceeded) {
		t.Fatalf("huge map: %v, want msgp.ErrLimitExceeded", err)
	}
}
