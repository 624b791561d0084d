package grid

import (
	"errors"
	"fmt"

	"github.com/gridmesh/gridmesh/mux"
)

// Errors returned by the grid. Match them with errors.Is.
var (
	// ErrDisconnected: the connection to the peer is down, or it broke while
	// a call was in flight. It is mux.ErrDisconnected, so callers may test
	// for either.
	ErrDisconnected = mux.ErrDisconnected
	// ErrClosed: the Manager was closed. Calls made after Close fail with an
	// error that matches both ErrClosed and ErrDisconnected.
	ErrClosed = errors.New("grid: manager closed")
	// ErrInvalidOptions: NewManager was given options it cannot use; the
	// error text names the field.
	ErrInvalidOptions = errors.New("grid: invalid options")
	// ErrRejected: the peer refused our handshake; the error text carries
	// the peer's reason.
	ErrRejected = errors.New("grid: handshake rejected")
	// ErrAuth: a peer's handshake proof did not verify.
	ErrAuth = errors.New("grid: authentication failed")
	// ErrPeerRemoved: Manager.SetHosts left the peer out. Calls made after
	// that fail at once, and calls in flight that outlive
	// Options.RemoveGrace fail, with an error that matches both
	// ErrPeerRemoved and ErrDisconnected (so code that retries a
	// disconnect elsewhere does so).
	ErrPeerRemoved = errors.New("grid: peer removed from the host list")
	// ErrNotSent: the call failed before it left this node (the connection
	// was down, closed or removed), so the peer never saw it; it is
	// wrapped beside ErrDisconnected, ErrClosed or ErrPeerRemoved. A caller
	// that must not run something twice may retry such a call elsewhere
	// freely.
	ErrNotSent = errors.New("grid: call not sent")
)

// optionError reports an invalid Options field.
func optionError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...))
}

// errManagerClosed is what calls on a closed Manager return.
var errManagerClosed = fmt.Errorf("%w: %w (%w)", ErrDisconnected, ErrClosed, ErrNotSent)

// errNotSent is the cause of a call refused before it was sent.
var errNotSent = fmt.Errorf("%w (%w)", ErrDisconnected, ErrNotSent)
