// Package defaults fills in the fields of an options struct that its
// caller left at their zero value: the way gridmesh's packages (mux,
// grid, gateway) give every option a working zero value, copied and
// defaulted once.
//
// It is stateless; its functions may be called concurrently on
// different values.
package defaults
