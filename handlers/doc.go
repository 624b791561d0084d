// Package handlers names the calls a gridmesh node can serve and holds the
// code that serves them.
//
// A HandlerID is a small integer that travels on the wire; New gives it a
// name for logs, errors and metrics. Names are per process: an ID has one
// name, whichever package gives it, and New panics when it is given
// another.
//
// Release note (issue 14, the whole mesh's stats): package grid reserves
// the largest ID, MaxHandlerID (4095), for the stats handler every
// Manager serves, named "grid-stats" (grid.HandlerStats). A program that
// imports grid and names 4095 otherwise now panics at start-up, in New;
// one that registers 4095 in the Registry it gives grid.NewManager gets
// an error naming the Registry field. Move such a handler to another ID.
//
// A Registry maps IDs to the functions that serve single requests
// (SingleHandler) and two-way streams (StreamHandler). A stream handler
// comes in two forms: Serve, which reads and writes through a
// ServerStream and costs the serving side one goroutine per open stream,
// and Handle, which reads and writes channels and costs two. The typed helpers (Single, TypedStream) wrap a registry
// entry and the calling side around msgp-generated request and response
// types, so neither side handles raw bytes; TypedStream serves in the
// Serve form.
//
// This package knows nothing of connections: the typed helpers call through
// the small Requester and StreamOpener interfaces, which mux.Session and
// grid.Connection implement.
//
// Concurrency: a Registry may be used by many goroutines at once; lookups
// never block, registrations are serialised. HandlerIDs are plain values.
package handlers
