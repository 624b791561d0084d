// Package testcluster starts, for tests, the whole pipeline on loopback:
// a Prime simulator, a gateway node with its Dispatcher, Journal and
// Gateway, and worker nodes running a contract. The gateway's and the
// workers' tests share it, as do the command's, so that each of them tests
// its own package against the real other side.
//
// Every wait is bounded by testutil.Timeout; everything started is closed
// at the test's cleanup.
package testcluster
