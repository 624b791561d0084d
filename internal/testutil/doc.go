// Package testutil holds the waits and log capture that the tests of
// several packages share. Every wait is bounded by Timeout. It is for
// tests only; nothing else imports it.
package testutil
