package handlers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Errors returned by Registry.
var (
	ErrInvalidID  = errors.New("handlers: handler id out of range")
	ErrRegistered = errors.New("handlers: handler already registered")
	ErrNilHandler = errors.New("handlers: nil handler")
)

// SingleHandler serves one request. ctx carries the caller's deadline and is
// cancelled when the caller gives up or the connection is lost.
//
// payload is only valid until the handler returns: the serving side may
// reuse its memory afterwards, so a handler that keeps it must copy it.
// The returned slice is copied onto the wire before the serving side lets
// go of it; the handler may return payload itself (an echo).
//
// A returned error reaches the caller as a remote error carrying its text.
// A panic is recovered and reported to the caller the same way.
type SingleHandler func(ctx context.Context, payload []byte) ([]byte, error)

// Entry is what a Registry holds for one HandlerID.
type Entry struct {
	ID     HandlerID
	Single SingleHandler
}

// Registry maps HandlerIDs to their handlers. The zero value is empty and
// ready to use. All methods may be called concurrently.
type Registry struct {
	mu      sync.Mutex // serialises registration
	entries [MaxHandlerID + 1]atomic.Pointer[Entry]
}

// RegisterSingle registers h to serve single requests for id. Registering an
// id twice, or an id outside 1..MaxHandlerID, is an error.
func (r *Registry) RegisterSingle(id HandlerID, h SingleHandler) error {
	if h == nil {
		return fmt.Errorf("%w: %v", ErrNilHandler, id)
	}
	return r.register(&Entry{ID: id, Single: h})
}

func (r *Registry) register(e *Entry) error {
	if !e.ID.Valid() {
		return fmt.Errorf("%w: %d (valid: 1..%d)", ErrInvalidID, uint16(e.ID), MaxHandlerID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries[e.ID].Load() != nil {
		return fmt.Errorf("%w: %v", ErrRegistered, e.ID)
	}
	r.entries[e.ID].Store(e)
	return nil
}

// Lookup returns the entry registered for id, or nil. It never blocks.
func (r *Registry) Lookup(id HandlerID) *Entry {
	if r == nil || !id.Valid() {
		return nil
	}
	return r.entries[id].Load()
}
