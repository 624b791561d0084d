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
	for _, c := range []mux.Config{{MaxMessageSize: -1}, {MaxMessageSize: 1<<30 + 1}, {MaxStreams: -1}, {CloseTimeout: -time.Second}} {
		err := c.Validate()
		if err == nil {
			t.Fatalf("%+v accepted", c)
		}
		if _, serr := mux.NewSession(nil, nil, c); serr == nil || serr.Error() != err.Error() {
			t.Fatalf("Validate says %v, NewSession %v", err, serr)
		}
	}
}
