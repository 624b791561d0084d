package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/tlsfiles"
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
	fmt.Fprintf(out, "primesim serving %s on %v (%s)\n", srv.MethodPath(), addr, scheme)
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
