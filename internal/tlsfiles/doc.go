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
// grid.Options.TLSConfig wants: on the serving side, GetConfigForClient
// hands out the current certificate and verifies client certificates
// against the current CA bundle; on the dialing side, the peer's chain is
// verified in VerifyConnection against the current bundle (crypto/tls
// checks only a static pool, so its own verification is turned off and
// done there instead, as the crypto/tls documentation's
// Config.VerifyConnection example does).
//
// A Reloader may be used concurrently.
package tlsfiles
