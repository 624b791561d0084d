package gateway

import "errors"

// Errors returned by the gateway. Match them with errors.Is.
var (
	// ErrConfig: a configuration is invalid; the error text names the field.
	ErrConfig = errors.New("gateway: invalid configuration")
	// ErrMaxReconnects: the Prime stream could not be kept up within
	// max_reconnect_attempts attempts.
	ErrMaxReconnects = errors.New("gateway: max reconnect attempts reached")
	// ErrJournalClosed: the journal was used after Close.
	ErrJournalClosed = errors.New("gateway: journal closed")
)
