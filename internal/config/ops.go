package config

import "net"

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

	// OpsToken is the token read from OpsTokenFile.
	OpsToken string `yaml:"-"`
}

func (o *Ops) validate() error {
	if o.OpsListen == "" {
		switch {
		case o.OpsTokenFile != "":
			return configError("ops_token_file", "is set but ops_listen is not")
		case o.OpsPprof:
			return configError("ops_pprof", "is set but ops_listen is not")
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
