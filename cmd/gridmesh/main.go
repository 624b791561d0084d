// Command gridmesh runs gridmesh nodes and their tools.
//
// Usage:
//
//	gridmesh demo     [flags]                       run Prime simulator → gateway → workers on loopback, check every answer
//	gridmesh gateway  [flags] -config gateway.yaml  hold Prime's stream and fan transactions out to grid workers
//	gridmesh worker   [flags] -config worker.yaml   run transactions for a gateway: a command per transaction, or long-lived processes
//	gridmesh bench    [flags]                       compare gridmesh with grpc-go and a raw WebSocket floor
//	gridmesh primesim [flags]                       run a Dragonchain Prime simulator
//	gridmesh status   [flags] OPS-URL...            show the state of running nodes (their operations ports' /stats)
//	gridmesh version                                print the build (also --version)
//
// Run "gridmesh <command> -h" for a command's flags; help goes to stdout
// and exits 0, a bad flag or a stray argument exits 2, a failure 1. The
// gateway, worker and primesim commands take -log-format text|json and
// -log-level debug|info|warn|error.
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

	"github.com/gridmesh/gridmesh/internal/buildinfo"
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
	{"status", "show the state of running nodes (their operations ports' /stats)", runStatus},
	{"version", "print the module version, VCS revision and Go version of this build", runVersion},
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
	if len(args) == 0 {
		usage(errOut)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(out)
		return 0
	case "-version", "--version":
		args[0] = "version"
	}
	for _, c := range append(commands[:len(commands):len(commands)], hiddenCommands...) {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], out)
		var ue usageError
		switch {
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(errOut, "gridmesh %s: %v\nRun 'gridmesh %s -h' for its flags.\n", c.name, ue.error, c.name)
			return 2
		case err != nil:
			fmt.Fprintf(errOut, "gridmesh %s: %v\n", c.name, err)
			return 1
		}
		return 0
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
	fmt.Fprintln(w, "\nRun 'gridmesh <command> -h' for a command's flags; 'gridmesh --version' prints the build.")
}

// runVersion prints the build: module version, VCS revision, Go version.
func runVersion(_ context.Context, args []string, out io.Writer) error {
	fs := newFlags("version", out)
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	fmt.Fprintln(out, buildinfo.Read())
	return nil
}
