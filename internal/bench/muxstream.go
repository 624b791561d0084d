package bench

import (
	"context"
	"math/rand/v2"
	"sync"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

// echoStreamID is the stream handler the gridmesh streamers serve.
const echoStreamID handlers.HandlerID = 2

// streamCapacity is the echo stream handler's input and output capacity in
// messages (its flow-control window). 128 messages of 512 B are 64 KiB,
// grpc-go's initial stream window, so that the long-stream comparison with
// grpc-go pipelines as many bytes on both sides (grpc-go may grow its window
// further by BDP estimation; ours stays fixed). The window costs no memory
// while it is unused: the channels hold at most a few messages and the rest
// waits in queues that grow only as messages arrive.
const streamCapacity = 128

// echoRegistry returns the registry with the echo single handler and the
// echo stream handler: InlineEcho's choice of the two registries below.
// It is shared, as a node shares one registry among all its connections.
func echoRegistry() (*handlers.Registry, error) {
	if InlineEcho {
		return inlineEchoRegistry()
	}
	return workerEchoRegistry()
}

var (
	workerEchoRegistry = sync.OnceValues(func() (*handlers.Registry, error) { return newEchoRegistry(false) })
	inlineEchoRegistry = sync.OnceValues(func() (*handlers.Registry, error) { return newEchoRegistry(true) })
)

func newEchoRegistry(inline bool) (*handlers.Registry, error) {
	reg := new(handlers.Registry)
	register := reg.RegisterSingle
	if inline {
		register = reg.RegisterInline
	}
	if err := register(echoID, func(_ context.Context, p []byte) ([]byte, error) { return p, nil }); err != nil {
		return nil, err
	}
	err := reg.RegisterStream(echoStreamID, handlers.StreamHandler{
		Serve: streamtest.ServeEcho, InCapacity: streamCapacity, OutCapacity: streamCapacity,
	})
	return reg, err
}

// newMuxSessions connects two mux sessions over TCP loopback; each serves
// the registry given for it.
func newMuxSessions(regA, regB *handlers.Registry) (a, b *mux.Session, err error) {
	ca, cb, err := tcpConnPair()
	if err != nil {
		return nil, nil, err
	}
	cfg := mux.Config{MaxMessageSize: MaxPayload}
	a, err = mux.NewSession(ca, regA, cfg)
	if err != nil {
		ca.Close()
		cb.Close()
		return nil, nil, err
	}
	b, err = mux.NewSession(cb, regB, cfg)
	if err != nil {
		a.Close()
		cb.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// NewMuxStream returns a Streamer of gridmesh mux streams: two sessions over
// TCP loopback, the server side serving an echo stream handler with a
// window of streamCapacity messages each way.
func NewMuxStream() (Streamer, error) {
	p, err := newMuxPair()
	if err != nil {
		return nil, err
	}
	return p, nil
}

// OpenStream opens a stream with Session.OpenStream, the Send/Recv API
// (the one typed streams use), which needs no goroutine on the calling
// side; NewStream's Requests channel costs one.
func (p *muxPair) OpenStream(ctx context.Context) (EchoStream, error) {
	st, err := p.client.OpenStream(ctx, echoStreamID, nil)
	if err != nil {
		return nil, err
	}
	return &muxStream{ctx: ctx, st: st}, nil
}

// muxStream adapts a handlers.RawStream (a *mux.Stream) to EchoStream.
type muxStream struct {
	ctx context.Context
	st  handlers.RawStream
}

func (m *muxStream) Send(msg []byte) error { return m.st.Send(m.ctx, msg) }
func (m *muxStream) Recv() ([]byte, error) { return m.st.Recv() }
func (m *muxStream) CloseSend() error      { m.st.CloseSend(); return nil }
func (m *muxStream) Recycle(msg []byte)    { mux.Recycle(msg) }

// NewMuxBidi returns a Pair of two gridmesh mux sessions over one TCP
// loopback connection that both serve the echo handler; each Call picks a
// direction at random, so both sides call each other at once.
func NewMuxBidi() (Pair, error) {
	reg, err := echoRegistry()
	if err != nil {
		return nil, err
	}
	a, b, err := newMuxSessions(reg, reg)
	if err != nil {
		return nil, err
	}
	return &muxBidi{muxPair{client: a, server: b}}, nil
}

type muxBidi struct{ muxPair }

func (p *muxBidi) Call(ctx context.Context, payload []byte) ([]byte, error) {
	if rand.IntN(2) == 0 {
		return p.client.Request(ctx, echoID, payload)
	}
	return p.server.Request(ctx, echoID, payload)
}

// bidiPair joins two one-way pairs, one per direction, into a Pair whose
// calls pick a direction at random: the way systems without two-way calls
// on one connection (grpc-go, the raw WebSocket floor) connect two nodes
// that call each other.
type bidiPair struct{ ab, ba Pair }

func (p *bidiPair) Call(ctx context.Context, payload []byte) ([]byte, error) {
	if rand.IntN(2) == 0 {
		return p.ab.Call(ctx, payload)
	}
	return p.ba.Call(ctx, payload)
}

func (p *bidiPair) Close() error {
	err := p.ab.Close()
	if err2 := p.ba.Close(); err == nil {
		err = err2
	}
	return err
}

func newBidi(newPair func() (Pair, error)) (Pair, error) {
	ab, err := newPair()
	if err != nil {
		return nil, err
	}
	ba, err := newPair()
	if err != nil {
		ab.Close()
		return nil, err
	}
	return &bidiPair{ab, ba}, nil
}

// NewGRPCBidi returns two grpc-go unary pairs, one per direction (each node
// a server and a client of the other, two TCP connections); each Call picks
// a direction at random.
func NewGRPCBidi() (Pair, error) { return newBidi(NewGRPCUnary) }

// NewRawWSBidi returns two raw WebSocket pairs, one per direction; each Call
// picks a direction at random.
func NewRawWSBidi() (Pair, error) { return newBidi(NewRawWS) }
