package main

import (
	"context"
	"io"
	"os"

	"github.com/gridmesh/gridmesh/gateway/contract"
)

// hiddenCommands run but are not listed in the usage: they serve other
// commands, not people.
var hiddenCommands = []command{
	{"contract-demo", "the demo's contract as a process (gateway line protocol on stdin/stdout); run by demo -process", runContractDemo},
}

// runContractDemo is the demo's contract as a long-lived process: it
// reads transactions from stdin and answers on out (stdout), one JSON
// line each (gateway/contract/PROCESS.md), until stdin ends.
func runContractDemo(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("contract-demo", out)
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	return contract.ServeProcess(ctx, os.Stdin, out, demoContractFunc)
}
