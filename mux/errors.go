package mux

import (
	"context"
	"errors"
	"fmt"

	"github.com/gridmesh/gridmesh/handlers"
)

// Errors returned by a Session. Match them with errors.Is.
var (
	// ErrDisconnected: the session is closed or its pipe broke. Requests in
	// flight when that happens fail with an error that matches it.
	ErrDisconnected = errors.New("mux: remote disconnected")
	// ErrMessageTooLarge: a payload exceeds the sending or receiving side's
	// maximum message size.
	ErrMessageTooLarge = errors.New("mux: message too large")
	// ErrUnknownHandler: the remote has no handler registered for the ID.
	ErrUnknownHandler = errors.New("mux: unknown handler")
	// ErrBusy: the remote had no free handler slot.
	ErrBusy = errors.New("mux: remote busy")
	// ErrHandlerPanic: the remote handler panicked.
	ErrHandlerPanic = errors.New("mux: remote handler panicked")
	// ErrProtocol: the peer broke the wire protocol; the session is closed.
	ErrProtocol = errors.New("mux: protocol violation")
	// ErrTooManyStreams: the session's stream limit (this side's
	// Config.MaxStreams or the peer's) is reached; the stream is refused.
	ErrTooManyStreams = errors.New("mux: too many streams")
	// ErrStreamEnded: a message was sent on a stream that has ended.
	ErrStreamEnded = errors.New("mux: stream ended")
	// ErrInvalidHandler: the HandlerID is outside the valid range.
	ErrInvalidHandler = errors.New("mux: invalid handler id")
)

// RemoteError is an error reported by the remote side of a request: the
// handler's own error, a panic, an unknown handler, or a refusal.
// Use errors.As to get at it, and errors.Is with ErrUnknownHandler,
// ErrHandlerPanic, ErrBusy, ErrMessageTooLarge or context.DeadlineExceeded
// (the handler gave up at the forwarded deadline) to tell the kind.
type RemoteError struct {
	Handler handlers.HandlerID
	Msg     string // the remote's error text
	code    byte
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("mux: %v: remote: %s", e.Handler, e.Msg)
}

// Is reports whether the remote error is of the kind target names.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrUnknownHandler:
		return e.code == codeUnknown
	case ErrHandlerPanic:
		return e.code == codePanic
	case ErrBusy:
		return e.code == codeBusy
	case ErrMessageTooLarge:
		return e.code == codeTooLarge
	case context.DeadlineExceeded:
		return e.code == codeDeadline
	case ErrTooManyStreams:
		return e.code == codeStreams
	}
	return false
}

func remoteError(h handlers.HandlerID, p []byte) *RemoteError {
	if len(p) == 0 {
		return &RemoteError{Handler: h, Msg: "malformed error", code: codeHandler}
	}
	return &RemoteError{Handler: h, Msg: string(p[1:]), code: p[0]}
}
