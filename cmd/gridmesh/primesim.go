package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// runPrimesim serves a Prime simulator until interrupted. With -count it
// also generates that many transactions and, once all are answered (or
// -wait passes), prints the report and exits.
func runPrimesim(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("primesim", out)
	listen := fs.String("listen", "127.0.0.1:50051", "address to serve gRPC on")
	apiKey := fs.String("api-key", "demo-key", "the x-api-key clients must send")
	contracts := fs.String("contracts", "demo-contract", "known smart contract IDs, comma-separated")
	chainID := fs.String("chain-id", "", "if set, the x-chain-id clients must send")
	method := fs.String("method", "", "full gRPC method path (default: the proto's)")
	count := fs.Int("count", 0, "transactions to generate for the first contract (0: none)")
	rate := fs.Float64("rate", 0, "transactions per second to generate (0: as fast as possible)")
	wait := fs.Duration("wait", 5*time.Minute, "with -count: how long to wait for every answer")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	srv, err := primesim.New(primesim.Config{
		APIKey:     *apiKey,
		Contracts:  strings.Split(*contracts, ","),
		ChainID:    *chainID,
		MethodPath: *method,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return err
	}
	if err := srv.Start(*listen); err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(out, "primesim serving %s on %v\n", srv.MethodPath(), srv.Addr())
	if *count == 0 {
		<-ctx.Done()
		fmt.Fprintln(out, srv.Report())
		return nil
	}
	cid := strings.Split(*contracts, ",")[0]
	if err := srv.Generate(ctx, cid, *count, *rate); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	werr := srv.WaitAnswered(wctx, *count)
	rep := srv.Report()
	fmt.Fprintln(out, rep)
	if werr != nil {
		return fmt.Errorf("waiting for answers: %w", werr)
	}
	if !rep.OK() {
		return fmt.Errorf("not every transaction was answered exactly once")
	}
	return nil
}
