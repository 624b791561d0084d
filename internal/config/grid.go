package config

import (
	"errors"
	"log/slog"
	"net/url"
	"strings"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/tlsfiles"
)

// Grid places a node in the grid.
type Grid struct {
	// Local is this node's URL, one of Hosts. Required. In a Kubernetes
	// StatefulSet it comes from the pod's name through the environment:
	// local: http://${POD_NAME}.gridmesh.default.svc:9000.
	Local string `yaml:"local"`
	// Hosts lists every node of the grid (gateway and workers), the same
	// list on every node. An entry may stand for several in the ellipsis
	// form: http://gridmesh-{0...4}.gridmesh.default.svc:9000. Required.
	Hosts []string `yaml:"hosts"`
	// Discover adds peers found in DNS to Hosts. Default: none. A running
	// node re-reads Hosts and Discover on SIGHUP and when the file
	// changes (see the command's reload).
	Discover *Discover `yaml:"discover"`
	// Secret is the grid's shared secret; SecretFile names a file holding
	// it (a trailing newline is dropped). One of the two is required.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Listen is the TCP address to serve on. Default: Local's host:port.
	Listen string `yaml:"listen"`
	// TLS serves and dials the grid over TLS, required when the hosts are
	// https:// or wss:// (and refused when none is).
	TLS *GridTLS `yaml:"tls"`
}

// GridTLS is the grid's TLS: PEM files, reloaded when they change
// (internal/tlsfiles).
type GridTLS struct {
	// CertFile and KeyFile are this node's certificate and key: served,
	// and presented to peers that ask for a client certificate. Required.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile is the bundle peers' certificates are verified against.
	// Default: the system roots (then client_auth must be off).
	CAFile string `yaml:"ca_file"`
	// ClientAuth asks peers dialing this node for a certificate: "off"
	// (the default), "request" (verified if given) or "require" (mutual
	// TLS).
	ClientAuth string `yaml:"client_auth"`
}

// files returns the tlsfiles form of t.
func (t *GridTLS) files() tlsfiles.Files {
	return tlsfiles.Files{Cert: t.CertFile, Key: t.KeyFile, CA: t.CAFile, ClientAuth: t.ClientAuth}
}

// Options returns grid options for this node: its TLS files loaded, and
// their reloads logged to logger.
func (g Grid) Options(logger *slog.Logger) (grid.Options, error) {
	o := grid.Options{Local: g.Local, Hosts: g.Hosts, Secret: []byte(g.Secret), Logger: logger}
	if g.TLS != nil {
		r, err := tlsfiles.Load(g.TLS.files(), tlsfiles.Options{Logger: logger})
		if err != nil {
			return o, tlsError("grid.tls", err)
		}
		o.TLSConfig = r.Config()
	}
	return o, nil
}

// ListenAddr returns the address to listen on.
func (g Grid) ListenAddr() (string, error) {
	if g.Listen != "" {
		return g.Listen, nil
	}
	u, err := url.Parse(g.Local)
	if err != nil || u.Host == "" {
		return "", configError("grid.local", "%q is not a URL with host:port", g.Local)
	}
	return u.Host, nil
}

// validate checks g, expands its hosts and reads its secret file.
func (g *Grid) validate() error {
	if g.Local == "" {
		return configError("grid.local", "is required")
	}
	if len(g.Hosts) == 0 {
		return configError("grid.hosts", "is required")
	}
	if err := g.Discover.validate(); err != nil {
		return err
	}
	hosts, err := expandHosts(g.Hosts)
	if err != nil {
		return configError("grid.hosts", "%v", err)
	}
	g.Hosts = hosts
	if err := readSecret(&g.Secret, g.SecretFile, "grid.secret", "grid.secret_file"); err != nil {
		return err
	}
	if err := g.validateHosts(); err != nil {
		return err
	}
	return g.validateTLS()
}

// validateHosts checks the hosts' URLs and that Local is one of them.
func (g *Grid) validateHosts() error {
	local := false
	for _, h := range g.Hosts {
		u, err := url.Parse(h)
		if err != nil || u.Host == "" {
			return configError("grid.hosts", "%q is not a URL scheme://host:port", h)
		}
		switch u.Scheme {
		case "http", "https", "ws", "wss":
		default:
			return configError("grid.hosts", "%q: the scheme must be http, https, ws or wss", h)
		}
		local = local || h == g.Local
	}
	if !local {
		return configError("grid.local", "%q is not one of grid.hosts", g.Local)
	}
	return nil
}

// validateTLS checks that TLS is configured exactly when some host is
// https:// or wss://, and that its files load.
func (g *Grid) validateTLS() error {
	var tlsHosts []string
	for _, h := range g.Hosts {
		if isTLSURL(h) {
			tlsHosts = append(tlsHosts, h)
		}
	}
	switch {
	case len(tlsHosts) > 0 && g.TLS == nil:
		return configError("grid.tls", "is required: grid.hosts has TLS hosts (%s); set grid.tls.cert_file, key_file and ca_file", strings.Join(first(tlsHosts, 3), ", "))
	case len(tlsHosts) == 0 && g.TLS != nil:
		return configError("grid.tls", "is set but no host in grid.hosts is https:// or wss://, so the grid would run without TLS")
	case g.TLS == nil:
		return nil
	case g.TLS.CertFile == "":
		return configError("grid.tls.cert_file", "is required")
	case g.TLS.KeyFile == "":
		return configError("grid.tls.key_file", "is required")
	}
	if _, err := tlsfiles.Load(g.TLS.files(), tlsfiles.Options{}); err != nil {
		return tlsError("grid.tls", err)
	}
	return nil
}

func isTLSURL(h string) bool {
	return strings.HasPrefix(h, "https://") || strings.HasPrefix(h, "wss://")
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "…")
	}
	return s
}

// tlsError names the field of a TLS error: section.cert_file, key_file,
// ca_file or client_auth.
func tlsError(section string, err error) error {
	var fe *tlsfiles.FileError
	switch {
	case errors.As(err, &fe):
		return configError(section+"."+fe.Role+"_file", "%s: %v", fe.Path, fe.Err)
	case errors.Is(err, tlsfiles.ErrClientAuth):
		return configError(section+".client_auth", "%v", err)
	}
	return configError(section, "%v", err)
}
