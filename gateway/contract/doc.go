// Package contract is what a smart contract's author imports: the
// contract's side of the line protocol that a worker in mode process
// speaks with the long-lived contract processes it supervises.
//
//	Prime ─▶ gateway ─▶ grid ─▶ worker ─[Request lines on stdin]─▶ contract process
//	                            worker ◀─[Answer lines on stdout]── (ServeProcess + your Func)
//
// A contract written in Go is a Func; its main calls ServeProcess with
// os.Stdin and os.Stdout and exits when it returns. PROCESS.md, beside this
// file, specifies the protocol for contracts in any language: the Request,
// Answer and Hello lines, cancel lines, and what a crash, a malformed or
// oversized line, a timeout or shutdown does.
//
// It imports the standard library only, so a contract's binary carries
// none of gRPC, bbolt, WebSocket or the grid.
//
// Concurrency: ServeProcess runs each transaction's Func on a goroutine of
// its own, up to ServeProcessOptions.MaxConcurrent at once, and returns
// only once every one it started has answered; Func must be safe for
// concurrent use.
package contract
