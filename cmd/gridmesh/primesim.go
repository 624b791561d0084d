package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/tlsfiles"
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
	var tf tlsfiles.Files
	fs.StringVar(&tf.Cert, "tls-cert", "", "serve TLS with this certificate (PEM file), with -tls-key")
	fs.StringVar(&tf.Key, "tls-key", "", "the key of -tls-cert (PEM file)")
	fs.StringVar(&tf.CA, "tls-client-ca", "", "CA bundle (PEM file) that clients' certificates are verified against")
	fs.StringVar(&tf.ClientAuth, "tls-client-auth", "", "ask clients for a certificate: off, request or require (default: require with -tls-client-ca, else off)")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *count < 0 || *wait <= 0 {
		return usagef("-count must not be negative and -wait must be positive")
	}
	logger, err := lf.logger()
	if err != nil {
		return err
	}
	tlsConfig, err := primesimTLS(&tf)
	if err != nil {
		return err
	}
	srv, err := primesim.New(primesim.Config{
		APIKey:     *apiKey,
		Contracts:  strings.Split(*contracts, ","),
		ChainID:    *chainID,
		MethodPath: *method,
		Logger:     logger,
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
	addr, stop, err := startPrimesim(srv, *listen, tlsConfig)
	if err != nil {
		_ = srv.Close()
		return err
	}
	defer stop()
	scheme := "plain gRPC"
	if tlsConfig != nil {
		scheme = "gRPC over TLS, client certificates " + tf.ClientAuth
	}
	fmt.Fprintf(out, "primesim serving %s on %v (%s), chain %q\n", srv.MethodPath(), addr, scheme, *chainID)
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

// primesimTLS loads the simulator's TLS files, or returns nil without
// -tls-cert. Its errors name the flag.
func primesimTLS(tf *tlsfiles.Files) (*tls.Config, error) {
	switch {
	case tf.Cert == "" && tf.Key == "" && tf.CA == "" && tf.ClientAuth == "":
		return nil, nil
	case tf.Cert == "" || tf.Key == "":
		return nil, usagef("-tls-cert and -tls-key go together, and the other -tls flags need them")
	case tf.ClientAuth == "" && tf.CA != "":
		tf.ClientAuth = tlsfiles.ClientAuthRequire
	case tf.ClientAuth == "":
		tf.ClientAuth = tlsfiles.ClientAuthOff
	}
	r, err := tlsfiles.Load(*tf, tlsfiles.Options{})
	if fe, ok := err.(*tlsfiles.FileError); ok {
		flag := map[string]string{"cert": "-tls-cert", "key": "-tls-key", "ca": "-tls-client-ca"}[fe.Role]
		return nil, fmt.Errorf("%s %s: %w", flag, fe.Path, fe.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("-tls-client-auth: %w", err)
	}
	return r.ServerConfig("h2"), nil // gRPC's clients insist on ALPN h2
}

// startPrimesim serves srv on listen, over TLS when tlsConfig is set,
// and returns the address it serves on and a function that closes srv
// and waits for its serving goroutine.
func startPrimesim(srv *primesim.Server, listen string, tlsConfig *tls.Config) (net.Addr, func(), error) {
	if tlsConfig == nil {
		if err := srv.Start(listen); err != nil {
			return nil, nil, err
		}
		return srv.Addr(), func() { _ = srv.Close() }, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, nil, fmt.Errorf("primesim: listen %s: %w", listen, err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(tls.NewListener(ln, tlsConfig))
	}()
	return ln.Addr(), func() { _ = srv.Close(); <-served }, nil
}
