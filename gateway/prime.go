package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/internal/backoff"
	pb "github.com/gridmesh/gridmesh/proto"
)

// Keepalive of the Prime connection, as in Prime's client template: a
// silent peer (half-open TCP) is detected within about 13 s.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 3 * time.Second
)

// Metadata keys Prime reads from every stream.
const (
	MetadataAPIKey          = "x-api-key"
	MetadataSmartContractID = "x-smart-contract-id"
	MetadataChainID         = "x-chain-id"
)

var runStreamDesc = grpc.StreamDesc{StreamName: "Run", ServerStreams: true, ClientStreams: true}

// healthyRun is how long a Prime stream must last for the reconnect
// backoff to start over.
const healthyRun = 60 * time.Second

// primeLoop keeps a stream to Prime until ctx ends or Run stops taking
// transactions, reconnecting with backoff after every failure.
func (g *Gateway) primeLoop(ctx context.Context) error {
	cfg := &g.opts.Prime
	base, maxDelay := cfg.ReconnectDelay, cfg.MaxBackoff
	if base <= 0 {
		base = time.Duration(cfg.ReconnectDelaySeconds) * time.Second
	}
	if maxDelay <= 0 {
		maxDelay = time.Duration(cfg.MaxBackoffSeconds) * time.Second
	}
	attempts := 0
	for {
		start := time.Now()
		err := g.connectAndServe(ctx)
		if ctx.Err() != nil || g.accept.Err() != nil {
			return nil
		}
		g.logStreamEnd(err)
		if time.Since(start) >= healthyRun {
			attempts = 0
		}
		attempts++
		if cfg.MaxReconnectAttempts > 0 && attempts >= cfg.MaxReconnectAttempts {
			g.log.Error("gateway: giving up on Prime", "attempts", attempts)
			return fmt.Errorf("%w (%d): %w", ErrMaxReconnects, attempts, err)
		}
		delay := backoff.Delay(base, maxDelay, attempts-1)
		g.log.Info("gateway: reconnecting to Prime", "in", delay.Round(time.Millisecond), "attempt", attempts)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-g.accept.Done():
			t.Stop()
			return nil
		}
	}
}

// logStreamEnd logs why a stream ended, plainly when Prime refused it.
func (g *Gateway) logStreamEnd(err error) {
	if err == nil {
		g.log.Warn("gateway: Prime closed the stream")
		return
	}
	st, _ := status.FromError(err) // finds a wrapped status
	switch st.Code() {
	case codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented:
		hint := ""
		switch {
		case strings.Contains(st.Message(), "missing chain ID"):
			hint = "Prime received no x-chain-id header: set chain_id"
		case strings.Contains(st.Message(), "chain ID"):
			hint = "check chain_id"
		case st.Code() == codes.Unauthenticated:
			hint = "check api_key"
		case st.Code() == codes.PermissionDenied:
			hint = "check smart_contract_id"
		case st.Code() == codes.Unimplemented:
			hint = "check method_path (" + g.opts.Prime.MethodPath + ")"
		}
		g.log.Error("gateway: Prime refused the stream", "code", st.Code().String(), "reason", st.Message(), "hint", hint)
	default:
		g.log.Warn("gateway: Prime stream ended", "err", err)
	}
}

// dial returns a client connection to Prime with the template's
// keepalive and transport security.
func (g *Gateway) dial() (*grpc.ClientConn, error) {
	cfg := &g.opts.Prime
	creds := insecure.NewCredentials()
	if cfg.UseTLS {
		creds = credentials.NewTLS(cfg.tls.ClientConfig()) // loaded by Validate
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true,
		}),
	}
	conn, err := grpc.NewClient(cfg.ServerAddress, append(opts, cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("gateway: connect to Prime at %s: %w", cfg.ServerAddress, err)
	}
	return conn, nil
}

func (g *Gateway) connectAndServe(ctx context.Context) error {
	conn, err := g.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	return g.session(ctx, conn)
}

// session runs one Run stream: this goroutine receives, one sender
// goroutine sends. A Send error cancels the stream, so the receive side
// ends too; any receive error ends the session. It returns why the stream
// ended: the receive error (Prime's status) when the stream ended under
// the sender, else the sender's own error.
func (g *Gateway) session(ctx context.Context, conn *grpc.ClientConn) error {
	cfg := &g.opts.Prime
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	streamCtx = metadata.NewOutgoingContext(streamCtx, metadata.Pairs(
		MetadataAPIKey, cfg.APIKey,
		MetadataSmartContractID, cfg.SmartContractID,
		MetadataChainID, cfg.ChainID,
	))
	cs, err := conn.NewStream(streamCtx, &runStreamDesc, cfg.MethodPath)
	if err != nil {
		return fmt.Errorf("gateway: open stream: %w", err)
	}
	sess := g.streams.Add(1)
	g.log.Info("gateway: stream open", "server", cfg.ServerAddress, "stream", sess)
	g.live.Store(true)
	defer g.live.Store(false)

	sendErr := make(chan error, 1)
	go func() { sendErr <- g.sendLoop(streamCtx, cancel, cs, sess) }()

	// recvCtx also ends when the gateway stops taking transactions, so a
	// receive waiting for capacity lets go; the stream stays up to send.
	recvCtx, recvCancel := context.WithCancel(streamCtx)
	defer recvCancel()
	stop := context.AfterFunc(g.accept, recvCancel)
	defer stop()
	rerr := g.recvLoop(recvCtx, cs, sess)
	cancel()
	serr := <-sendErr
	if errors.Is(serr, errStreamGone) {
		g.log.Debug("gateway: send failed as the stream ended", "err", serr)
		return rerr
	}
	if serr != nil {
		return serr
	}
	return rerr
}

// errStreamGone marks a Send that failed because the stream had ended (or
// was ending): the receive side has the reason.
var errStreamGone = errors.New("stream ended")

func (g *Gateway) recvLoop(ctx context.Context, cs grpc.ClientStream, sess uint64) error {
	for {
		req := new(pb.SmartContractRequest)
		if err := cs.RecvMsg(req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("gateway: receive: %w", err)
		}
		g.deliver(ctx, req, sess)
	}
}

// sendLoop is the stream's only sender. A Send error tears the stream
// down. When the stream had ended under it (gRPC's io.EOF, or the session
// cancelled), the result stays pending and is sent first on the next
// stream (Gateway.resend); otherwise it is left to Prime, which delivers
// the transaction again on the next stream, answered from the journal.
// When the gateway has drained, it half-closes the stream.
func (g *Gateway) sendLoop(ctx context.Context, cancel context.CancelFunc, cs grpc.ClientStream, sess uint64) error {
	send := func(res *wire.TxResult) error {
		err := cs.SendMsg(response(res))
		if err != nil {
			g.counters.sendErrors.Add(1)
			gone := errors.Is(err, io.EOF) || ctx.Err() != nil
			cancel()
			if gone {
				g.noteResend(res.ID, err)
				g.resend <- res // never blocks: this sender emptied it first
				return fmt.Errorf("gateway: send: %w: %w", errStreamGone, err)
			}
			g.unpend(res.ID)
			return fmt.Errorf("gateway: send: %w", err)
		}
		g.sentOK(res, sess)
		return nil
	}
	select {
	case res := <-g.resend:
		if err := send(res); err != nil {
			return err
		}
	default:
	}
	for {
		select {
		case res := <-g.out:
			g.dequeued()
			if err := send(res); err != nil {
				return err
			}
		case <-g.drained:
			for {
				select {
				case res := <-g.out:
					g.dequeued()
					if err := send(res); err != nil {
						return err
					}
					continue
				default:
				}
				_ = cs.CloseSend()
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}
