// Package blackhole is a TCP proxy for tests that can turn into a black
// hole: while it is on, every byte either side sends is read and thrown
// away, and the TCP connections stay open, as when a peer vanishes
// without a FIN (a half-open connection). It replaces a fault proxy
// library for the tests of grid and gateway that need exactly that one
// fault.
//
// A Proxy owns its goroutines: one accept loop and two copy loops per
// connection, all ended and waited for by Close. Its methods may be
// called concurrently.
package blackhole
