// Command gridmesh runs gridmesh nodes and their tools.
//
// Usage:
//
//	gridmesh demo     [flags]                   run Prime simulator → gateway → workers on loopback, check every answer
//	gridmesh gateway  [-v] -config gateway.yaml  hold Prime's stream and fan transactions out to grid workers
//	gridmesh worker   [-v] -config worker.yaml   run transactions for a gateway: a command per transaction, or long-lived processes
//	gridmesh bench    [flags]                   compare gridmesh with grpc-go and a raw WebSocket floor
//	gridmesh primesim [flags]                   run a Dragonchain Prime simulator
//	gridmesh status   [flags] NODE-URL...       show the connections of running nodes (their stats endpoints)
//
// Run "gridmesh <command> -h" for a command's flags.
//
// The gateway and worker shut down gracefully at SIGINT or SIGTERM: the
// gateway answers Prime for the transactions in flight (drain_timeout),
// the worker refuses new transactions, which the gateway runs elsewhere,
// and finishes those it runs (-drain-timeout, or drain_timeout in its
// configuration). A second signal stops either at once: the gateway
// cancels what it runs and leaves it to Prime to deliver again, the
// worker leaves what it runs to the gateway to run elsewhere.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, out io.Writer) error
}

var commands = []command{
	{"demo", "run Prime simulator → gateway → workers on loopback, check every answer", runDemo},
	{"gateway", "hold Prime's stream and fan transactions out to grid workers", runGateway},
	{"worker", "run transactions for a gateway: a command per transaction, or long-lived processes", runWorker},
	{"bench", "compare gridmesh with grpc-go and a raw WebSocket floor", runBench},
	{"primesim", "run a Dragonchain Prime simulator", runPrimesim},
	{"status", "show the connections of running nodes (their stats endpoints)", runStatus},
}

func main() {
	ctx, force := signalContexts()
	os.Exit(run(withForce(ctx, force), os.Args[1:], os.Stdout, os.Stderr))
}

// signalContexts returns a context that the first SIGINT or SIGTERM
// cancels and one that the second cancels: a command shuts down
// gracefully at the first, and at once at the second (see forceContext).
// A third signal has its default effect.
func signalContexts() (graceful, force context.Context) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	graceful, stop := context.WithCancel(context.Background())
	force, kill := context.WithCancel(context.Background())
	go func() { // lives as long as the process
		<-sigs
		stop()
		<-sigs
		kill()
		signal.Stop(sigs)
	}()
	return graceful, force
}

// forceKey is the context key of the context a second signal cancels.
type forceKey struct{}

// withForce returns ctx carrying force, for forceContext.
func withForce(ctx, force context.Context) context.Context {
	return context.WithValue(ctx, forceKey{}, force)
}

// forceContext returns the context that a second signal cancels, or, when
// ctx carries none (a command run by a test), one that never ends.
func forceContext(ctx context.Context) context.Context {
	if f, ok := ctx.Value(forceKey{}).(context.Context); ok {
		return f
	}
	return context.Background()
}

func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(errOut)
		return 2
	}
	for _, c := range append(commands[:len(commands):len(commands)], hiddenCommands...) {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], out)
			if errors.Is(err, flag.ErrHelp) {
				return 2
			}
			if err != nil {
				fmt.Fprintf(errOut, "gridmesh %s: %v\n", c.name, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(errOut, "gridmesh: unknown command %q\n\n", args[0])
	usage(errOut)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gridmesh <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gridmesh "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}
