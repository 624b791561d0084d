package config

import (
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/gridmesh/gridmesh/internal/tlsfiles"
)

// Ops is the operations port of a gateway or worker: /metrics,
// /healthz, /readyz, /stats and, when enabled, /debug/pprof/, apart from
// the grid's port.
type Ops struct {
	// OpsListen is the TCP address of the operations port, e.g.
	// 0.0.0.0:9100. Default: none (no operations port).
	OpsListen string `yaml:"ops_listen"`
	// OpsTokenFile names a file holding a bearer token that every request
	// to the operations port but /healthz and /readyz must carry
	// ("Authorization: Bearer TOKEN"). Default: none, no token asked.
	OpsTokenFile string `yaml:"ops_token_file"`
	// OpsPprof serves the Go profiler at /debug/pprof/. Default false.
	OpsPprof bool `yaml:"ops_pprof"`
	// OpsTLS serves the operations port over HTTPS with grid.tls's
	// certificate (clients are not asked for one: the token is their
	// proof). Default false. Kubernetes probes then use scheme HTTPS.
	OpsTLS bool `yaml:"ops_tls"`

	// OpsToken is the token read from OpsTokenFile.
	OpsToken string `yaml:"-"`
}

// validate checks the fields and reads the token; g is the node's grid
// section, whose TLS ops_tls uses.
func (o *Ops) validate(g *Grid) error {
	if o.OpsTLS && g.TLS == nil {
		return configError("ops_tls", "serves grid.tls's certificate, and grid.tls is not set")
	}
	return o.check()
}

func (o *Ops) check() error {
	if o.OpsListen == "" {
		switch {
		case o.OpsTokenFile != "":
			return configError("ops_token_file", "is set but ops_listen is not")
		case o.OpsPprof:
			return configError("ops_pprof", "is set but ops_listen is not")
		case o.OpsTLS:
			return configError("ops_tls", "is set but ops_listen is not")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(o.OpsListen); err != nil {
		return configError("ops_listen", "%q is not host:port: %v", o.OpsListen, err)
	}
	if o.OpsTokenFile == "" {
		return nil
	}
	return readSecret(&o.OpsToken, o.OpsTokenFile, "ops_token", "ops_token_file")
}

// OpsTLSConfig returns the operations port's TLS configuration (nil
// without ops_tls): grid.tls's certificate, reloaded as it changes, no
// client certificate asked for.
func (o *Ops) OpsTLSConfig(g Grid, logger *slog.Logger) (*tls.Config, error) {
	if !o.OpsTLS {
		return nil, nil
	}
	f := g.TLS.files()
	f.ClientAuth = tlsfiles.ClientAuthOff
	r, err := tlsfiles.Load(f, tlsfiles.Options{Logger: logger})
	if err != nil {
		return nil, tlsError("grid.tls", err)
	}
	return r.ServerConfig(), nil
}
