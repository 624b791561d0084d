package handlers

import (
	"context"
	"fmt"
	"sync"

	"github.com/tinylib/msgp/msgp"
)

// Requester sends a single request and waits for its answer. mux.Session
// and grid.Connection implement it. Implementations copy payload before
// they return, so the caller may reuse it afterwards.
type Requester interface {
	Request(ctx context.Context, h HandlerID, payload []byte) ([]byte, error)
}

// Message is a type that msgp can marshal and unmarshal: in practice a
// pointer to a type with a //go:generate msgp directive.
type Message interface {
	msgp.Marshaler
	msgp.Unmarshaler
	msgp.Sizer
}

// Single is a typed single handler: the serving side registers a function
// of Req to Resp, the calling side calls it with a Req and gets a Resp, and
// msgp does the encoding in between. A Single may be used concurrently.
type Single[Req, Resp Message] struct {
	id      HandlerID
	newReq  func() Req
	newResp func() Resp
	bufs    sync.Pool // *[]byte request encodings, reused across calls
}

// NewSingle returns a typed single handler for id. newReq and newResp return
// fresh values to decode into (such as func() *T { return new(T) }).
func NewSingle[Req, Resp Message](id HandlerID, newReq func() Req, newResp func() Resp) *Single[Req, Resp] {
	return &Single[Req, Resp]{id: id, newReq: newReq, newResp: newResp}
}

// ID returns the handler's ID.
func (s *Single[Req, Resp]) ID() HandlerID { return s.id }

// Register registers fn in r under the handler's ID. A request that does
// not decode as Req is answered with an error naming the handler; fn is not
// called.
func (s *Single[Req, Resp]) Register(r *Registry, fn func(ctx context.Context, req Req) (Resp, error)) error {
	return r.RegisterSingle(s.id, s.handler(fn))
}

// RegisterInline is Register for a handler that runs on the connection's
// reader (Registry.RegisterInline): one that finishes in microseconds
// without waiting.
func (s *Single[Req, Resp]) RegisterInline(r *Registry, fn func(ctx context.Context, req Req) (Resp, error)) error {
	return r.RegisterInline(s.id, s.handler(fn))
}

// handler wraps fn as a SingleHandler that decodes and encodes.
func (s *Single[Req, Resp]) handler(fn func(ctx context.Context, req Req) (Resp, error)) SingleHandler {
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		req := s.newReq()
		if _, err := req.UnmarshalMsg(payload); err != nil {
			return nil, fmt.Errorf("handlers: %v: decode request: %w", s.id, err)
		}
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, err
		}
		return resp.MarshalMsg(make([]byte, 0, resp.Msgsize()))
	}
}

// Call sends req to the handler through c and decodes the answer.
func (s *Single[Req, Resp]) Call(ctx context.Context, c Requester, req Req) (Resp, error) {
	var zero Resp
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.bufs.Put(bp)
	b, err := req.MarshalMsg((*bp)[:0])
	if err != nil {
		return zero, fmt.Errorf("handlers: %v: encode request: %w", s.id, err)
	}
	*bp = b
	out, err := c.Request(ctx, s.id, b)
	if err != nil {
		return zero, err
	}
	resp := s.newResp()
	if _, err := resp.UnmarshalMsg(out); err != nil {
		return zero, fmt.Errorf("handlers: %v: decode response: %w", s.id, err)
	}
	return resp, nil
}
