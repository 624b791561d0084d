package gateway

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"google.golang.org/grpc"

	"github.com/gridmesh/gridmesh/internal/tlsfiles"
)

// PrimeConfig is the Prime side of the gateway, field for field the
// configuration of Dragonchain Prime's Go smart-contract client template.
// The gridmesh command loads it from its gateway YAML; a library user
// fills it in directly.
type PrimeConfig struct {
	// ServerAddress is Prime's gRPC endpoint, host:port. Required.
	ServerAddress string `yaml:"server_address"`
	// ChainID is sent as x-chain-id; Prime refuses a stream without it.
	// Required.
	ChainID string `yaml:"chain_id"`
	// SmartContractID is sent as x-smart-contract-id. Required.
	SmartContractID string `yaml:"smart_contract_id"`
	// APIKey is sent as x-api-key. Required.
	APIKey string `yaml:"api_key"`
	// UseTLS dials Prime over TLS, trusting TLSCertPath (a PEM file) or,
	// when that is empty, the system roots.
	UseTLS      bool   `yaml:"use_tls"`
	TLSCertPath string `yaml:"tls_cert_path"`
	// TLSClientCertPath and TLSClientKeyPath are a client certificate and
	// its key (PEM files) presented to Prime when it asks for one (mutual
	// TLS); both or neither, with UseTLS. They are reloaded when they
	// change, and every TLS file is read by Validate, so that a missing
	// or broken one stops the gateway at start-up.
	TLSClientCertPath string `yaml:"tls_client_cert_path"`
	TLSClientKeyPath  string `yaml:"tls_client_key_path"`
	// ReconnectDelaySeconds is the base of the reconnect backoff:
	// min(MaxBackoffSeconds, base·2^n) + jitter in [0, base). Default 3.
	ReconnectDelaySeconds int `yaml:"reconnect_delay_seconds"`
	// MaxBackoffSeconds caps the backoff. Default 120.
	MaxBackoffSeconds int `yaml:"max_backoff_seconds"`
	// MaxReconnectAttempts gives up after that many failed attempts in a
	// row; 0 (the default) retries forever.
	MaxReconnectAttempts int `yaml:"max_reconnect_attempts"`
	// MethodPath is the full gRPC method path of the Run stream,
	// "/<package>.SmartContractService/Run". Default
	// smartcontractpb.DefaultRunMethod.
	MethodPath string `yaml:"method_path"`

	// ReconnectDelay and MaxBackoff, when set, replace the two *Seconds
	// fields with finer durations (tests, library users).
	ReconnectDelay time.Duration `yaml:"-"`
	MaxBackoff     time.Duration `yaml:"-"`
	// DialOptions are appended to the gateway's own when it dials Prime.
	DialOptions []grpc.DialOption `yaml:"-"`

	tls *tlsfiles.Reloader // the TLS files, loaded by Validate
}

// Validate applies defaults and reports the first missing or invalid field
// by its YAML name.
func (c *PrimeConfig) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"server_address", c.ServerAddress}, {"chain_id", c.ChainID},
		{"smart_contract_id", c.SmartContractID}, {"api_key", c.APIKey},
	} {
		if f.v == "" {
			return configError(f.name, "is required")
		}
	}
	if c.ReconnectDelaySeconds < 0 || c.MaxBackoffSeconds < 0 || c.MaxReconnectAttempts < 0 {
		return configError("reconnect_delay_seconds, max_backoff_seconds, max_reconnect_attempts", "must not be negative")
	}
	if c.MethodPath != "" && !validMethodPath(c.MethodPath) {
		return configError("method_path", "%q is not of the form /<service>/<method>", c.MethodPath)
	}
	if err := c.loadTLS(); err != nil {
		return err
	}
	if c.ReconnectDelaySeconds == 0 {
		c.ReconnectDelaySeconds = 3
	}
	if c.MaxBackoffSeconds == 0 {
		c.MaxBackoffSeconds = 120
	}
	return nil
}

// loadTLS reads the TLS files, naming the field of one that fails.
func (c *PrimeConfig) loadTLS() error {
	if !c.UseTLS {
		for _, f := range []struct{ name, v string }{
			{"tls_cert_path", c.TLSCertPath}, {"tls_client_cert_path", c.TLSClientCertPath}, {"tls_client_key_path", c.TLSClientKeyPath},
		} {
			if f.v != "" {
				return configError(f.name, "is set but use_tls is false")
			}
		}
		return nil
	}
	r, err := tlsfiles.Load(tlsfiles.Files{Cert: c.TLSClientCertPath, Key: c.TLSClientKeyPath, CA: c.TLSCertPath}, tlsfiles.Options{})
	var fe *tlsfiles.FileError
	if errors.As(err, &fe) {
		field := map[string]string{"cert": "tls_client_cert_path", "key": "tls_client_key_path", "ca": "tls_cert_path"}[fe.Role]
		return configError(field, "%s: %v", fe.Path, fe.Err)
	}
	if err != nil {
		return configError("tls_cert_path", "%v", err)
	}
	c.tls = r
	return nil
}

func validMethodPath(p string) bool {
	u, err := url.Parse(p)
	if err != nil || u.Path != p || len(p) < 4 || p[0] != '/' {
		return false
	}
	n := 0
	for i := 1; i < len(p); i++ {
		if p[i] == '/' {
			if i == 1 || i == len(p)-1 {
				return false
			}
			n++
		}
	}
	return n == 1
}

func configError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// checkMaxResultBytes checks a bound on results: 0 (the default) or at
// least MinResultBytes, room for the error answer that replaces a result
// over it.
func checkMaxResultBytes(field string, n int) error {
	if n != 0 && n < MinResultBytes {
		return configError(field, "%d is less than %d", n, MinResultBytes)
	}
	return nil
}
