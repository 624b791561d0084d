package handlers_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
)

var (
	hUpper = handlers.New(10, "upper")
	hMeta  = handlers.New(11, "meta")
)

func TestRegistry(t *testing.T) {
	var r handlers.Registry
	h := func(context.Context, []byte) ([]byte, error) { return nil, nil }
	if err := r.RegisterSingle(hUpper, h); err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterSingle(hUpper, h); !errors.Is(err, handlers.ErrRegistered) || !strings.Contains(err.Error(), "upper(10)") {
		t.Fatalf("twice: %v", err)
	}
	for _, id := range []handlers.HandlerID{0, handlers.MaxHandlerID + 1, 65535} {
		if err := r.RegisterSingle(id, h); !errors.Is(err, handlers.ErrInvalidID) {
			t.Fatalf("id %d: %v", id, err)
		}
	}
	if err := r.RegisterSingle(hMeta, nil); !errors.Is(err, handlers.ErrNilHandler) {
		t.Fatalf("nil: %v", err)
	}
	if err := r.RegisterStream(hMeta, handlers.StreamHandler{InCapacity: 1}); !errors.Is(err, handlers.ErrNilHandler) {
		t.Fatalf("stream handler in neither form: %v", err)
	}
	both := handlers.StreamHandler{
		Serve:  func(context.Context, []byte, handlers.ServerStream) error { return nil },
		Handle: func(context.Context, []byte, <-chan []byte, chan<- []byte) error { return nil },
	}
	if err := r.RegisterStream(hMeta, both); !errors.Is(err, handlers.ErrTwoForms) {
		t.Fatalf("stream handler in both forms: %v", err)
	}
	if r.Lookup(hMeta) != nil {
		t.Fatal("a refused stream handler was registered")
	}
	if e := r.Lookup(hUpper); e == nil || e.ID != hUpper || e.Single == nil || e.Inline {
		t.Fatalf("lookup: %+v", e)
	}
	hInline := handlers.New(12, "inline")
	if err := r.RegisterInline(hInline, nil); !errors.Is(err, handlers.ErrNilHandler) {
		t.Fatalf("nil inline: %v", err)
	}
	if err := r.RegisterInline(hUpper, h); !errors.Is(err, handlers.ErrRegistered) {
		t.Fatalf("inline over a registered id: %v", err)
	}
	if err := r.RegisterInline(0, h); !errors.Is(err, handlers.ErrInvalidID) {
		t.Fatalf("inline id 0: %v", err)
	}
	if err := r.RegisterInline(hInline, h); err != nil {
		t.Fatal(err)
	}
	if e := r.Lookup(hInline); e == nil || e.Single == nil || !e.Inline {
		t.Fatalf("inline lookup: %+v", e)
	}
	if r.Lookup(hMeta) != nil || r.Lookup(0) != nil || r.Lookup(60000) != nil {
		t.Fatal("lookup of unregistered id found something")
	}
	var nilReg *handlers.Registry
	if nilReg.Lookup(hUpper) != nil {
		t.Fatal("nil registry lookup")
	}
}

func TestNames(t *testing.T) {
	if got := hUpper.String(); got != "upper(10)" {
		t.Fatalf("got %q", got)
	}
	if got := handlers.HandlerID(300).String(); got != "handler(300)" {
		t.Fatalf("got %q", got)
	}
	if handlers.New(10, "upper") != hUpper {
		t.Fatal("renaming with the same name must be allowed")
	}
	for _, f := range []func(){
		func() { handlers.New(10, "other") },
		func() { handlers.New(0, "zero") },
		func() { handlers.New(5000, "big") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("New did not panic")
				}
			}()
			f()
		}()
	}
}

// direct calls a registry in-process: a Requester without a network, to
// test the typed layer on its own (the mux tests cover the wire).
type direct struct{ r *handlers.Registry }

func (d direct) Request(ctx context.Context, h handlers.HandlerID, p []byte) ([]byte, error) {
	e := d.r.Lookup(h)
	if e == nil {
		return nil, errors.New("unknown handler")
	}
	return e.Single(ctx, append([]byte(nil), p...))
}

func TestTypedSingle(t *testing.T) {
	var r handlers.Registry
	meta := handlers.NewSingle(hMeta, func() *handlers.MSS { return new(handlers.MSS) }, func() *handlers.Text { return new(handlers.Text) })
	err := meta.Register(&r, func(_ context.Context, m *handlers.MSS) (*handlers.Text, error) {
		if (*m)["fail"] != "" {
			return nil, errors.New((*m)["fail"])
		}
		return &handlers.Text{Value: (*m)["name"] + "@" + (*m)["zone"]}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := direct{&r}
	for range 3 { // reuses the pooled request buffer
		got, err := meta.Call(context.Background(), c, &handlers.MSS{"name": "n1", "zone": "eu"})
		if err != nil || got.Value != "n1@eu" {
			t.Fatalf("got %+v, %v", got, err)
		}
	}
	if _, err := meta.Call(context.Background(), c, &handlers.MSS{"fail": "no"}); err == nil || err.Error() != "no" {
		t.Fatalf("handler error: %v", err)
	}
	// A request that does not decode is refused without calling fn.
	_, err = c.Request(context.Background(), hMeta, []byte{0xc1})
	if err == nil || !strings.Contains(err.Error(), "meta(11): decode request") {
		t.Fatalf("bad payload: %v", err)
	}
	if meta.ID() != hMeta {
		t.Fatal("ID")
	}
}

// TestTypedSingleInline: RegisterInline registers the same typed handler,
// marked inline.
func TestTypedSingleInline(t *testing.T) {
	var r handlers.Registry
	meta := handlers.NewSingle(hMeta, func() *handlers.MSS { return new(handlers.MSS) }, func() *handlers.Text { return new(handlers.Text) })
	err := meta.RegisterInline(&r, func(_ context.Context, m *handlers.MSS) (*handlers.Text, error) {
		return &handlers.Text{Value: (*m)["name"]}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := r.Lookup(hMeta); e == nil || !e.Inline {
		t.Fatalf("entry %+v, want inline", e)
	}
	got, err := meta.Call(context.Background(), direct{&r}, &handlers.MSS{"name": "n2"})
	if err != nil || got.Value != "n2" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := (direct{&r}).Request(context.Background(), hMeta, []byte{0xc1}); err == nil || !strings.Contains(err.Error(), "decode request") {
		t.Fatalf("bad payload: %v", err)
	}
	if err := meta.RegisterInline(&r, nil); !errors.Is(err, handlers.ErrRegistered) {
		t.Fatalf("twice: %v", err)
	}
}
