package wire_test

import (
	"errors"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/gridmesh/gridmesh/gateway/wire"
)

// TestTxRequestMapBound: a request whose env map claims 2^32-1 entries
// in ten bytes is refused before anything is allocated for it (it used to
// kill the worker: fatal error: out of memory, which no recover catches).
func TestTxRequestMapBound(t *testing.T) {
	// {"env": map32 of 0xffffffff entries}, and nothing after.
	bad := []byte{0x81, 0xa3, 'e', 'n', 'v', 0xdf, 0xff, 0xff, 0xff, 0xff}
	var req wire.TxRequest
	if _, err := req.UnmarshalMsg(bad); !errors.Is(err, msgp.ErrLimitExceeded) {
		t.Fatalf("huge env map: %v, want msgp.ErrLimitExceeded", err)
	}
	// A request at the bound still decodes.
	ok := wire.TxRequest{ID: "t", EnvVars: map[string]string{}}
	for i := range 1024 {
		ok.EnvVars[string(rune('a'+i%26))+string(rune(0x100+i))] = "v"
	}
	b, err := ok.MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	var back wire.TxRequest
	if _, err := back.UnmarshalMsg(b); err != nil || len(back.EnvVars) != 1024 {
		t.Fatalf("1024 env vars: %d decoded, err %v", len(back.EnvVars), err)
	}
}
