// Package testcerts issues real X.509 certificates for tests: a fresh
// CA (ECDSA P-256, crypto/x509) and leaf certificates it signs for the
// names and addresses a test serves on, written as PEM files where a
// configuration expects them. It is for tests only.
//
// Its functions may be called concurrently.
package testcerts
