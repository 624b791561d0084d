package gateway

import "errors"

// Errors returned by the gateway. Match them with errors.Is.
var (
	// ErrConfig: a configuration is invalid; the error text names the field.
	ErrConfig = errors.New("gateway: invalid configuration")
	// ErrMaxReconnects: the Prime stream could not be kept up within
	// max_reconnect_attempts attempts.
	ErrMaxReconnects = errors.New("gateway: max reconnect attempts reached")
	// ErrTooLarge: a transaction, or its result, is larger than the grid
	// carries in one message (grid.Options.Mux.MaxMessageSize, 16 MiB by
	// default: four times what Prime takes). Running it again cannot help,
	// so Prime is answered with this error, as for a result over
	// Options.MaxResultBytes.
	ErrTooLarge = errors.New("gateway: too large for the grid")
	// ErrJournalClosed: the journal was used after Close.
	ErrJournalClosed = errors.New("gateway: journal closed")
)
