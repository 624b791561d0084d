package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// rawCodec is a gRPC codec that passes []byte (or *[]byte) through unchanged.
// Marshal does not copy; Unmarshal copies once out of gRPC's pooled buffers.
type rawCodec struct{}

func (rawCodec) Name() string { return "raw" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch b := v.(type) {
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
	}
	return nil, fmt.Errorf("bench: raw codec cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("bench: raw codec cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

const (
	echoService      = "gridmesh.bench.Echo"
	echoUnaryMethod  = "/" + echoService + "/Unary"
	echoStreamMethod = "/" + echoService + "/Stream"
)

var echoStreamDesc = grpc.StreamDesc{
	StreamName:    "Stream",
	Handler:       echoStreamHandler,
	ServerStreams: true,
	ClientStreams: true,
}

// echoServiceDesc is a hand-written descriptor; no protobuf is involved.
var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: echoUnaryHandler}},
	Streams:     []grpc.StreamDesc{echoStreamDesc},
}

func echoUnaryHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return in, nil
	}
	info := &grpc.UnaryServerInfo{FullMethod: echoUnaryMethod}
	return interceptor(ctx, in, info, func(_ context.Context, req any) (any, error) { return req, nil })
}

func echoStreamHandler(_ any, stream grpc.ServerStream) error {
	for {
		var msg []byte
		if err := stream.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.SendMsg(msg); err != nil {
			return err
		}
	}
}

// grpcPair is a grpc-go server and one ClientConn over loopback.
type grpcPair struct {
	srv    *grpc.Server
	conn   *grpc.ClientConn
	served chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// NewGRPCUnary starts a grpc-go server on 127.0.0.1 with a unary echo method
// (raw-bytes codec, insecure credentials, default transport settings apart
// from message size limits of [MaxPayload] and a handshake timeout) and
// connects one ClientConn to it. Call invokes the unary method on that
// connection.
func NewGRPCUnary() (Pair, error) { return newGRPC() }

// NewGRPCStream starts the same server as [NewGRPCUnary]; OpenStream opens a
// bidirectional echo stream on its single ClientConn.
func NewGRPCStream() (Streamer, error) { return newGRPC() }

func newGRPC() (*grpcPair, error) {
	srv, lis, served, err := startGRPCServer()
	if err != nil {
		return nil, err
	}
	p := &grpcPair{srv: srv, served: served}
	if p.conn, err = dialGRPC(lis.Addr().String()); err != nil {
		srv.Stop()
		<-p.served
		return nil, err
	}
	return p, nil
}

// startGRPCServer starts the echo server on 127.0.0.1; served is closed
// when its Serve loop returned.
func startGRPCServer() (srv *grpc.Server, lis net.Listener, served chan struct{}, err error) {
	lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	srv = grpc.NewServer(
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(MaxPayload),
		grpc.MaxSendMsgSize(MaxPayload),
		grpc.WaitForHandlers(true),
		// Bounds a connection's HTTP/2 handshake (grpc-go's default is
		// two minutes); it costs nothing once connected.
		grpc.ConnectionTimeout(setupTimeout),
	)
	srv.RegisterService(&echoServiceDesc, struct{}{})
	served = make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	return srv, lis, served, nil
}

// dialGRPC connects a ClientConn to the echo server at addr and waits
// until it is ready, so that setup is not measured by the first call.
func dialGRPC(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.ForceCodecV2(rawCodec{}),
			grpc.MaxCallRecvMsgSize(MaxPayload),
			grpc.MaxCallSendMsgSize(MaxPayload),
		),
	)
	if err != nil {
		return nil, err
	}
	if err := waitReady(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// waitReady connects conn eagerly and waits until it is ready.
func waitReady(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !conn.WaitForStateChange(ctx, s) {
			return fmt.Errorf("bench: grpc client not ready: %w (state %v)", ctx.Err(), s)
		}
	}
}

func (p *grpcPair) Call(ctx context.Context, payload []byte) ([]byte, error) {
	var out []byte
	if err := p.conn.Invoke(ctx, echoUnaryMethod, payload, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (p *grpcPair) OpenStream(ctx context.Context) (EchoStream, error) {
	cs, err := p.conn.NewStream(ctx, &echoStreamDesc, echoStreamMethod)
	if err != nil {
		return nil, err
	}
	return grpcStream{cs}, nil
}

func (p *grpcPair) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = p.conn.Close()
		p.srv.Stop()
		<-p.served
	})
	return p.closeErr
}

type grpcStream struct{ cs grpc.ClientStream }

func (s grpcStream) Send(msg []byte) error { return s.cs.SendMsg(msg) }

func (s grpcStream) Recv() ([]byte, error) {
	var out []byte
	if err := s.cs.RecvMsg(&out); err != nil {
		return nil, err
	}
	return out, nil
}

func (s grpcStream) CloseSend() error { return s.cs.CloseSend() }
