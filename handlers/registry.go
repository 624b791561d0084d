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
	ErrInvalidID   = errors.New("handlers: handler id out of range")
	ErrRegistered  = errors.New("handlers: handler already registered")
	ErrNilHandler  = errors.New("handlers: nil handler")
	ErrBadCapacity = errors.New("handlers: bad stream capacity")
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

// StreamHandler serves a two-way stream. Handle receives the caller's
// initial payload, reads the caller's messages from in (closed when the
// caller ends its input; nil when InCapacity is 0) and sends messages to
// the caller on out. Returning ends the stream: nil ends it cleanly, an
// error reaches the caller as the stream's last Response.
//
// ctx carries the caller's deadline and is cancelled when the caller gives
// up or the connection is lost; a handler must select on ctx.Done() when it
// sends on out, since out blocks while the caller is not reading. Messages
// from in belong to the handler; a message sent on out must not be changed
// afterwards. payload is only valid until Handle returns.
type StreamHandler struct {
	Handle func(ctx context.Context, payload []byte, in <-chan []byte, out chan<- []byte) error
	// InCapacity is how many caller messages may wait for the handler
	// (credit granted to the caller). 0 means the handler takes no input.
	InCapacity int
	// OutCapacity is how many handler messages may wait for the caller to
	// read them. 0 means 1.
	OutCapacity int
}

// MaxStreamCapacity bounds InCapacity and OutCapacity.
const MaxStreamCapacity = 1 << 16

// Entry is what a Registry holds for one HandlerID: a single handler or a
// stream handler.
type Entry struct {
	ID     HandlerID
	Single SingleHandler
	Stream *StreamHandler
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

// RegisterStream registers h to serve streams for id. Registering an id
// twice (as a single or stream handler), an id out of range, a nil Handle
// or a capacity outside 0..MaxStreamCapacity is an error.
func (r *Registry) RegisterStream(id HandlerID, h StreamHandler) error {
	if h.Handle == nil {
		return fmt.Errorf("%w: %v", ErrNilHandler, id)
	}
	if h.InCapacity < 0 || h.InCapacity > MaxStreamCapacity || h.OutCapacity < 0 || h.OutCapacity > MaxStreamCapacity {
		return fmt.Errorf("%w: %v: capacities %d/%d outside 0..%d", ErrBadCapacity, id, h.InCapacity, h.OutCapacity, MaxStreamCapacity)
	}
	if h.OutCapacity == 0 {
		h.OutCapacity = 1
	}
	return r.register(&Entry{ID: id, Stream: &h})
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
