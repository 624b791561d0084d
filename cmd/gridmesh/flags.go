package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// usageError is a command line the command cannot run: a bad flag, a
// missing or stray argument. run prints it and exits 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// newFlags returns a flag set that reports errors instead of exiting;
// parseFlags parses it. Help (-h) goes to out.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gridmesh "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parseFlags parses args into fs. -h prints the command's help (its
// Usage, to out) and returns flag.ErrHelp; a bad flag, or an argument
// when the command takes none (positional false), is a usageError.
func parseFlags(fs *flag.FlagSet, args []string, positional bool) error {
	out := fs.Output()
	help := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard) // errors are returned, and printed by run
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = help
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return flag.ErrHelp
	case err != nil:
		return usageError{err}
	case !positional && fs.NArg() > 0:
		return usagef("unexpected argument %q (this command takes flags only; flags go before arguments)", fs.Arg(0))
	}
	return nil
}

// logFlags are the logging flags of the long-running commands.
type logFlags struct {
	format, level string
	verbose       bool
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "least level logged: debug, info, warn or error")
	fs.BoolVar(&l.verbose, "v", false, "log at debug level (-log-level debug)")
}

// logger returns the logger the flags ask for, writing to stderr.
func (l *logFlags) logger() (*slog.Logger, error) {
	return newLogger(os.Stderr, l.format, l.level, l.verbose)
}

func newLogger(w io.Writer, format, level string, verbose bool) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("-log-level %q: want debug, info, warn or error", level)
	}
	if verbose {
		lv = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("-log-format %q: want text or json", format)
}
