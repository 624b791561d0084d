package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/internal/config"
)

func TestDiscoverConfig(t *testing.T) {
	c, err := config.LoadWorker(writeFile(t, gridYAML+"  discover: {dns: w.default.svc.cluster.local, port: 9000}\ncommand: [cat]\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Grid.Discover
	if d == nil || d.DNS != "w.default.svc.cluster.local" || d.Port != 9000 || d.Scheme != "http" || d.Interval != 5*time.Second {
		t.Fatalf("discover %+v, want the defaults filled in", d)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"{port: 9000}", "grid.discover.dns is required"},
		{"{dns: x, scheme: ftp}", "grid.discover.scheme"},
		{"{dns: x, port: 70000}", "grid.discover.port"},
		{"{dns: x, interval: -1s}", "grid.discover.interval"},
		{"{dns: x, server: nowhere}", "grid.discover.server"},
	} {
		_, err := config.LoadWorker(writeFile(t, gridYAML+"  discover: "+tc.yaml+"\ncommand: [cat]\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig naming %s", tc.yaml, err, tc.want)
		}
	}
}
