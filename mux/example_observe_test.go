package mux_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var (
	lookup = handlers.New(170, "lookup")
	slow   = time.Millisecond
)

// tally is a RequestObserver counting each side's requests by outcome
// kind, and the slowest handler.
type tally struct {
	mu      sync.Mutex
	kinds   map[string]int
	slowest time.Duration
}

func (t *tally) RequestBegun(handlers.HandlerID, bool) {}

func (t *tally) RequestDone(h handlers.HandlerID, serving bool, d time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	side := "client"
	if serving {
		side = "server"
		t.slowest = max(t.slowest, d)
	}
	t.kinds[side+" "+h.Name()+" "+mux.ErrorKind(err, serving)]++
}

// An observer on both sessions: each request is told once on each side,
// with its duration and the kind of its outcome ("" for success).
func ExampleRequestObserver() {
	reg := new(handlers.Registry)
	reg.RegisterSingle(lookup, func(_ context.Context, key []byte) ([]byte, error) {
		time.Sleep(slow)
		if string(key) == "" {
			return nil, errors.New("empty key")
		}
		return key, nil
	})
	t := &tally{kinds: map[string]int{}}
	a, b := net.Pipe()
	client, _ := mux.NewSession(a, nil, mux.Config{Observer: t})
	server, _ := mux.NewSession(b, reg, mux.Config{Observer: t})
	defer server.Close()
	defer client.Close()

	for _, key := range []string{"a", "b", ""} {
		client.Request(context.Background(), lookup, []byte(key))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Println(t.kinds["client lookup "], t.kinds["client lookup handler"], t.kinds["server lookup "], t.kinds["server lookup handler"])
	fmt.Println("slowest handler at least", slow, t.slowest >= slow)
	// Output:
	// 2 1 2 1
	// slowest handler at least 1ms true
}
