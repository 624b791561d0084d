package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Client certificate policies of a serving side (Files.ClientAuth).
const (
	ClientAuthOff     = "off"     // no client certificate asked for (the default)
	ClientAuthRequest = "request" // asked for, verified if given
	ClientAuthRequire = "require" // required and verified
)

// Files names the PEM files of a TLS configuration. Each may be empty.
type Files struct {
	// Cert and Key are this side's certificate chain and private key,
	// served, and presented to peers that ask for a client certificate.
	// Both or neither.
	Cert, Key string
	// CA is the bundle that peers' certificates are verified against, both
	// servers' and clients'. Empty: the system roots for servers; client
	// certificates then cannot be verified, so ClientAuth must be off.
	CA string
	// ClientAuth is the serving side's policy: ClientAuthOff (or empty),
	// ClientAuthRequest or ClientAuthRequire.
	ClientAuth string
}

// Options tune a Reloader.
type Options struct {
	// CheckInterval is the least time between two looks at the files.
	// Default DefaultCheckInterval.
	CheckInterval time.Duration
	// Logger receives a line when the files are reloaded, or fail to.
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DefaultCheckInterval is Options.CheckInterval's default.
const DefaultCheckInterval = 5 * time.Second

// FileError is a file that could not be read or did not parse. Role is
// "cert", "key" or "ca", for the caller to name its own field.
type FileError struct {
	Role, Path string
	Err        error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("tls %s file %s: %v", e.Role, e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// ErrClientAuth: Files.ClientAuth is not one of the policies, or asks to
// verify client certificates without a CA bundle.
var ErrClientAuth = errors.New("tlsfiles: bad client_auth")

// material is one loaded generation of the files.
type material struct {
	cert *tls.Certificate // nil without Cert
	pool *x509.CertPool   // the CA bundle; nil: the system roots
	sig  [3]fileSig
}

// fileSig tells whether a file changed since it was read.
type fileSig struct {
	size    int64
	modTime time.Time
}

// Reloader holds the current material of a Files and the TLS
// configurations that use it.
type Reloader struct {
	files Files
	opts  Options
	cur   atomic.Pointer[material]

	mu        sync.Mutex // serializes checks
	lastCheck time.Time
	failedSig [3]fileSig // the signature whose load failed, logged once
}

// Load reads files and returns a Reloader that follows them. A file that
// cannot be read or parsed is a *FileError.
func Load(files Files, opts Options) (*Reloader, error) {
	switch files.ClientAuth {
	case "", ClientAuthOff:
	case ClientAuthRequest, ClientAuthRequire:
		if files.CA == "" {
			return nil, fmt.Errorf("%w: %q needs a CA bundle to verify client certificates", ErrClientAuth, files.ClientAuth)
		}
	default:
		return nil, fmt.Errorf("%w: %q is none of %q, %q, %q", ErrClientAuth, files.ClientAuth, ClientAuthOff, ClientAuthRequest, ClientAuthRequire)
	}
	if (files.Cert == "") != (files.Key == "") {
		role, path := "key", files.Key
		if files.Cert == "" {
			role, path = "cert", files.Cert
		}
		return nil, &FileError{Role: role, Path: path, Err: errors.New("is required with the other of cert and key")}
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Reloader{files: files, opts: opts}
	m, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	r.lastCheck = opts.Now()
	return r, nil
}

// HasCert reports whether the files include a certificate to serve.
func (r *Reloader) HasCert() bool { return r.files.Cert != "" }

// load reads every file.
func (r *Reloader) load() (*material, error) {
	m := &material{sig: r.stat()}
	if r.files.Cert != "" {
		certPEM, err := os.ReadFile(r.files.Cert)
		if err != nil {
			return nil, &FileError{Role: "cert", Path: r.files.Cert, Err: err}
		}
		keyPEM, err := os.ReadFile(r.files.Key)
		if err != nil {
			return nil, &FileError{Role: "key", Path: r.files.Key, Err: err}
		}
		if _, err := parseCerts(certPEM); err != nil {
			return nil, &FileError{Role: "cert", Path: r.files.Cert, Err: err}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, &FileError{Role: "key", Path: r.files.Key, Err: err}
		}
		m.cert = &cert
	}
	if r.files.CA != "" {
		caPEM, err := os.ReadFile(r.files.CA)
		if err != nil {
			return nil, &FileError{Role: "ca", Path: r.files.CA, Err: err}
		}
		certs, err := parseCerts(caPEM)
		if err != nil {
			return nil, &FileError{Role: "ca", Path: r.files.CA, Err: err}
		}
		m.pool = x509.NewCertPool()
		for _, c := range certs {
			m.pool.AddCert(c)
		}
	}
	return m, nil
}

// stat returns the files' signatures; a file that cannot be stat'ed has
// the zero one.
func (r *Reloader) stat() [3]fileSig {
	var sig [3]fileSig
	for i, p := range []string{r.files.Cert, r.files.Key, r.files.CA} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			sig[i] = fileSig{size: fi.Size(), modTime: fi.ModTime()}
		}
	}
	return sig
}

// current returns the material in force, reloading it first if the files
// changed and the last look is CheckInterval old.
func (r *Reloader) current() *material {
	m := r.cur.Load()
	if !r.mu.TryLock() {
		return m // another handshake is looking
	}
	defer r.mu.Unlock()
	now := r.opts.Now()
	if now.Sub(r.lastCheck) < r.opts.CheckInterval {
		return m
	}
	r.lastCheck = now
	sig := r.stat()
	if sig == m.sig || sig == r.failedSig {
		return m
	}
	next, err := r.load()
	if err != nil {
		r.failedSig = sig
		r.opts.Logger.Warn("tls: certificate files changed but do not load; keeping the previous ones", "err", err)
		return m
	}
	r.cur.Store(next)
	r.opts.Logger.Info("tls: certificate files reloaded", "cert", r.files.Cert, "ca", r.files.CA)
	return next
}

// Reload reads the files now, whatever CheckInterval says, and returns
// why they did not load (the previous ones are kept then).
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.load()
	if err != nil {
		return err
	}
	r.cur.Store(m)
	r.lastCheck = r.opts.Now()
	return nil
}
