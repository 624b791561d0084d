package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// runPrimesim serves a Prime simulator until interrupted. With -count it
// also generates that many transactions and, once all are answered and
// -settle has passed (or -wait passes, or a signal comes), prints the
// report and exits by its verdict: 0 if every transaction was answered
// exactly once, 1 otherwise.
func runPrimesim(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("primesim", out)
	listen := fs.String("listen", "127.0.0.1:50051", "address to serve gRPC on")
	apiKey := fs.String("api-key", demoAPIKey, "the x-api-key clients must send")
	contracts := fs.String("contracts", demoContract, "known smart contract IDs, comma-separated")
	chainID := fs.String("chain-id", primesim.DefaultChainID, "the x-chain-id clients must send (empty: any)")
	method := fs.String("method", "", "full gRPC method path (default: the proto's)")
	count := fs.Int("count", 0, "transactions to generate for the first contract (0: none); with -state, the load's total over the file's life: a simulator restarted on it generates the rest")
	rate := fs.Float64("rate", 0, "transactions per second to generate (0: as fast as possible)")
	wait := fs.Duration("wait", 5*time.Minute, "with -count: how long to wait for every answer")
	settle := fs.Duration("settle", primesim.DefaultSettle, "with -count: how long to wait after the last first answer, to count late duplicates")
	state := fs.String("state", "", "keep the books in this bbolt file, to survive kill -9 and deliver again what is unanswered (default: in memory)")
	commit := fs.Duration("commit-interval", primesim.DefaultCommitInterval, "with -state: how often changes are written (one fsync each)")
	loss := fs.Duration("loss-window", 0, "with -state: write an answer only once it is this old, so that kill -9 loses the answers of its last loss window, which are then delivered again")
	retention := fs.Duration("retention", primesim.DefaultRetention, "with -state: how long answered transactions stay in the file")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *count < 0 || *wait <= 0 {
		return errors.New("-count must not be negative and -wait must be positive")
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
		Settle:     *settle,
		StatePath:  *state,
		// CommitInterval and Retention are ignored without a state file;
		// a LossWindow without one is refused.
		CommitInterval: *commit,
		Retention:      *retention,
		LossWindow:     *loss,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Start(*listen); err != nil {
		return err
	}
	fmt.Fprintf(out, "primesim serving %s on %v, chain %q\n", srv.MethodPath(), srv.Addr(), *chainID)
	if r := srv.Report(); r.State {
		fmt.Fprintf(out, "state file %s: %d transactions recovered, %d of them unanswered; %d submitted over its life\n",
			*state, r.Recovered, r.RecoveredUnanswered, r.Submitted)
	}
	if *count == 0 {
		<-ctx.Done()
		_ = srv.Close()
		fmt.Fprintln(out, srv.Report())
		return nil
	}
	return primesimLoad(ctx, out, srv, strings.Split(*contracts, ",")[0], *count, *rate, *wait)
}

// primesimLoad generates the load up to count transactions, waits for the
// answers and the settle time, closes srv, prints the report and returns
// its verdict. A signal (ctx) cuts the waits short: the report is printed
// and judged all the same.
func primesimLoad(ctx context.Context, out io.Writer, srv *primesim.Server, cid string, count int, rate float64, wait time.Duration) error {
	if err := srv.GenerateUpTo(ctx, cid, count, rate); err != nil && ctx.Err() == nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	_, werr := srv.WaitReport(wctx, max(count, srv.Report().Submitted))
	cancel()
	_ = srv.Close() // ends the streams and writes the state file
	rep := srv.Report()
	fmt.Fprintln(out, rep)
	switch {
	case rep.OK():
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("stopped by a signal with %d of %d transactions answered, %d more than once", rep.Answered, rep.Submitted, rep.AnsweredMoreThanOnce)
	case werr != nil && rep.Answered < rep.Submitted:
		return fmt.Errorf("waiting for answers: %w", werr)
	default:
		return errors.New("not every transaction was answered exactly once")
	}
}
