// Package backoff computes the delays between the attempts of a retry
// loop, the same for every part of gridmesh that reconnects or restarts
// something (grid's dialer, the gateway's Prime stream, contract
// processes): min(max, base·2^n) plus a jitter uniform in [0, base), n
// counting the failed attempts since the last healthy run, so that many
// nodes retrying after a common failure do not arrive together.
//
// Delay is stateless and may be called concurrently; a Backoff is used
// by one goroutine.
package backoff
