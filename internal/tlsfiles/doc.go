// Package tlsfiles builds TLS configurations from PEM files (a
// certificate, its key, a CA bundle) that follow the files as they
// change: a certificate rotated on disk, as cert-manager or a Kubernetes
// Secret volume does, is served and presented from the next handshake on,
// with no restart.
//
// Load reads the files once, so that a missing or broken file is an
// error at start-up, naming the file (FileError). Afterwards the files
// are looked at (stat) at most once per Options.CheckInterval, from
// within the handshakes themselves: no goroutine runs in the background.
// A change that does not load (a half-written file) keeps the last good
// material and is logged once.
//
// The one *tls.Config that Config returns serves and dials, as
// grid.Options.TLSConfig wants. Serving, GetConfigForClient hands each
// handshake the current certificate and verifies client certificates
// against the current CA bundle. Dialing, GetClientCertificate presents
// the current certificate, and servers are verified by crypto/tls
// against the bundle as it was when Config was called: crypto/tls
// verifies a server's name from the dialer's ServerName, which a custom
// verification cannot see for an IP address, so the dialing side's trust
// is not swapped under it. Rotating the certificates under one CA needs
// no restart; a new CA needs a restart of the dialing nodes, or a bundle
// holding both CAs for the time of the change.
//
// A Reloader may be used concurrently.
package tlsfiles
