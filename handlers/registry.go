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
	ErrTwoForms    = errors.New("handlers: stream handler sets both Serve and Handle")
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

// StreamHandler serves a two-way stream, in one of two forms: set exactly
// one of Serve and Handle. Either function receives the caller's initial
// payload (valid only until it returns). Returning ends the stream: nil
// ends it cleanly, an error reaches the caller as the stream's last
// Response.
//
// ctx carries the caller's deadline and is cancelled when the caller gives
// up or the connection is lost.
//
// Serve reads the caller's messages with st.Recv and sends its own with
// st.Send. Both return once the stream's context is done, so a Serve that
// only waits in them needs no select of its own. It is the cheaper form:
// an open stream costs the serving side the handler's goroutine and
// nothing else.
//
// Handle reads the caller's messages from in (closed when the caller ends
// its input; nil when InCapacity is 0) and sends messages on out. It must
// select on ctx.Done() when it sends on out, since out blocks while the
// caller is not reading, and the serving side keeps a second goroutine per
// stream to take messages from out. A message sent on out must not be
// changed afterwards; it may be the initial payload itself (an echo),
// which the serving side keeps until that goroutine has sent it.
//
// Messages received belong to the handler in both forms.
type StreamHandler struct {
	Serve  func(ctx context.Context, payload []byte, st ServerStream) error
	Handle func(ctx context.Context, payload []byte, in <-chan []byte, out chan<- []byte) error
	// InCapacity is how many caller messages may wait for the handler
	// (credit granted to the caller). 0 means the handler takes no input.
	InCapacity int
	// OutCapacity is how many handler messages may wait for the caller to
	// read them. 0 means 1.
	OutCapacity int
}

// ServerStream is one open stream as a StreamHandler's Serve sees it. Its
// methods may be called concurrently; concurrent Sends take turns, so each
// message leaves whole, in the order of their turns.
//
// Both methods take a context, which may be the stream's own (the ctx Serve
// was given) or one derived from it; they return its error when it is done
// before they are.
type ServerStream interface {
	// Recv returns the caller's next message; io.EOF once the caller ended
	// its input (at once if InCapacity is 0); or, once the stream's
	// context or ctx is done, that context's error. The message belongs to
	// the handler.
	Recv(ctx context.Context) ([]byte, error)
	// Send sends msg to the caller, waiting for flow-control credit while
	// the caller is not reading. msg is copied before Send returns. It
	// returns an error once the stream's context or ctx is done, or if msg
	// is larger than the caller accepts (the stream then ends with that
	// error).
	Send(ctx context.Context, msg []byte) error
}

// MaxStreamCapacity bounds InCapacity and OutCapacity.
const MaxStreamCapacity = 1 << 16

// Entry is what a Registry holds for one HandlerID: a single handler or a
// stream handler.
type Entry struct {
	ID     HandlerID
	Single SingleHandler
	Stream *StreamHandler
	// Inline says that Single runs on the connection's reader
	// (RegisterInline).
	Inline bool
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

// RegisterInline registers h, as RegisterSingle does, to run on the
// goroutine that reads the connection rather than on a worker of its own.
// That spares the hand-off to the worker and the wake-up of a thread to
// run it, which on a connection carrying few calls at a time is a large
// share of a round trip.
//
// It is meant for handlers that finish in microseconds without waiting:
// a lookup, a counter, an echo. The connection reads nothing else while
// the handler runs: other requests, stream messages and credit, pings and
// cancels wait, and a cancel of this request does not reach it; its
// context still carries the caller's deadline. A handler that runs longer
// than the session's inline budget (mux.Config.InlineBudget, 100 µs by
// default) does no harm beyond that budget's delay: the reading moves to
// another goroutine, and the handler finishes as any other would.
func (r *Registry) RegisterInline(id HandlerID, h SingleHandler) error {
	if h == nil {
		return fmt.Errorf("%w: %v", ErrNilHandler, id)
	}
	return r.register(&Entry{ID: id, Single: h, Inline: true})
}

// RegisterStream registers h to serve streams for id. Registering an id
// twice (as a single or stream handler), an id out of range, neither or
// both of Serve and Handle, or a capacity outside 0..MaxStreamCapacity is
// an error.
func (r *Registry) RegisterStream(id HandlerID, h StreamHandler) error {
	if (h.Handle == nil) == (h.Serve == nil) {
		if h.Handle != nil {
			return fmt.Errorf("%w: %v", ErrTwoForms, id)
		}
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
