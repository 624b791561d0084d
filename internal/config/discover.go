package config

import (
	"net"
	"time"

	"github.com/gridmesh/gridmesh/internal/defaults"
)

// Discover finds grid peers in DNS, as the "grid.discover" section: every
// Interval the node looks up the SRV records of DNS (a Kubernetes headless
// Service's name, say) and adds Scheme://TARGET:PORT for each record to
// grid.hosts, TARGET the record's target (a StatefulSet pod's stable name)
// without its final dot. A failed lookup keeps the last good membership.
type Discover struct {
	// DNS is the name whose SRV records list the peers. Required.
	DNS string `yaml:"dns"`
	// Port overrides the records' ports. Default 0: each record's own.
	Port int `yaml:"port"`
	// Scheme of the peers' URLs: http or https. Default http.
	Scheme string `yaml:"scheme"`
	// Interval between lookups. Default 5s.
	Interval time.Duration `yaml:"interval"`
	// Server is the DNS server (host:port) to ask. Default: the system's
	// resolver.
	Server string `yaml:"server"`
}

func (d *Discover) validate() error {
	if d == nil {
		return nil
	}
	switch {
	case d.DNS == "":
		return configError("grid.discover.dns", "is required")
	case d.Port < 0 || d.Port > 65535:
		return configError("grid.discover.port", "%d is not a port", d.Port)
	case d.Interval < 0:
		return configError("grid.discover.interval", "must not be negative")
	}
	switch d.Scheme {
	case "":
		d.Scheme = "http"
	case "http", "https":
	default:
		return configError("grid.discover.scheme", "%q is neither http nor https", d.Scheme)
	}
	if d.Server != "" {
		if _, _, err := net.SplitHostPort(d.Server); err != nil {
			return configError("grid.discover.server", "%q is not host:port", d.Server)
		}
	}
	defaults.Set(&d.Interval, 5*time.Second)
	return nil
}
