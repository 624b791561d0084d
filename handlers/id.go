package handlers

import (
	"fmt"
	"strconv"
	"sync"
)

// HandlerID identifies a handler on the wire. Valid IDs are 1..MaxHandlerID;
// the zero value means "no handler".
type HandlerID uint16

// MaxHandlerID is the largest valid HandlerID. It bounds the registry's
// lookup table (a fixed array, so lookups are a single load).
const MaxHandlerID HandlerID = 4095

var names struct {
	mu sync.RWMutex
	m  map[HandlerID]string
}

// New returns the HandlerID num and records name for it, for String.
// It is meant for package-level variables:
//
//	var Echo = handlers.New(1, "echo")
//
// New panics if num is out of range or already named differently, because
// that is a programming error found at start-up, like a duplicate flag.
//
// Names are kept per process, for every package at once: an ID named by a
// library the program imports (whose package variables are set before
// the importer's) cannot be named otherwise. Package grid names
// MaxHandlerID "grid-stats" (grid.HandlerStats, the stats handler every
// Manager serves), so a program that imports grid must leave 4095 to it:
// New(4095, "anything else") panics at start-up, before any Manager could
// report the clash as an error.
func New(num uint16, name string) HandlerID {
	h := HandlerID(num)
	if !h.Valid() {
		panic(fmt.Sprintf("handlers: id %d out of range 1..%d", num, MaxHandlerID))
	}
	names.mu.Lock()
	defer names.mu.Unlock()
	if names.m == nil {
		names.m = make(map[HandlerID]string)
	}
	if old, ok := names.m[h]; ok && old != name {
		hint := ""
		if h == MaxHandlerID {
			hint = "; package grid reserves it for its stats handler"
		}
		panic(fmt.Sprintf("handlers: id %d named both %q and %q (an ID has one name in a process, whichever package names it%s)", num, old, name, hint))
	}
	names.m[h] = name
	return h
}

// Valid reports whether h is in the range 1..MaxHandlerID.
func (h HandlerID) Valid() bool { return h > 0 && h <= MaxHandlerID }

// Name returns the name given to h by New, as in "echo", or h.String()
// for an unnamed ID: a name for metrics labels and span attributes.
func (h HandlerID) Name() string {
	names.mu.RLock()
	name, ok := names.m[h]
	names.mu.RUnlock()
	if !ok {
		return h.String()
	}
	return name
}

// String returns the name given to h by New followed by its number, as in
// "echo(1)", or "handler(7)" for an unnamed ID.
func (h HandlerID) String() string {
	names.mu.RLock()
	name, ok := names.m[h]
	names.mu.RUnlock()
	if !ok {
		name = "handler"
	}
	return name + "(" + strconv.Itoa(int(h)) + ")"
}
