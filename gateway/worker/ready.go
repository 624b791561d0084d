package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/grid"
)

// Why a worker is not ready (Ready).
var (
	ErrNotProbed   = errors.New("worker: no gateway has asked for this worker yet")
	ErrNoGateway   = errors.New("worker: no gateway that asked for this worker is connected")
	ErrWorkerDrain = errors.New("worker: draining")
)

// noteGateway remembers a peer that asked for the worker's info: a
// gateway.
func (w *Worker) noteGateway(host string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gateways == nil {
		w.gateways = make(map[string]bool)
	}
	w.gateways[host] = true
}

// Ready reports whether the worker serves a gateway: some gateway that
// asked for it (wire.HandlerInfo) is connected, and it is not draining.
// It returns nil, or why not (ErrWorkerDrain, ErrNotProbed, ErrNoGateway).
func (w *Worker) Ready() error {
	w.mu.Lock()
	draining := w.draining
	hosts := make([]string, 0, len(w.gateways))
	for h := range w.gateways {
		hosts = append(hosts, h)
	}
	w.mu.Unlock()
	switch {
	case draining:
		return ErrWorkerDrain
	case len(hosts) == 0:
		return ErrNotProbed
	}
	for _, h := range hosts {
		if c := w.m.Connection(h); c != nil && c.State() == grid.StateConnected {
			return nil
		}
	}
	return fmt.Errorf("%w (%d known)", ErrNoGateway, len(hosts))
}

// Failed contracts are logged at WARN, one line per transaction with its
// ID, at most failLogBurst lines per failLogWindow; the first line after
// a window that dropped some says how many (not_logged).
const (
	failLogBurst  = 10
	failLogWindow = 10 * time.Second
	// failLogErrBytes bounds the contract error quoted in a line.
	failLogErrBytes = 256
)

// failLog rate-limits the WARN lines of failed contracts.
type failLog struct {
	mu      sync.Mutex
	start   time.Time // of the current window
	logged  int       // lines in the current window
	dropped int       // lines not logged since the last one
}

// log writes res's line, unless the window's lines are used up.
func (f *failLog) log(logger *slog.Logger, res *wire.TxResult, now time.Time) {
	f.mu.Lock()
	if now.Sub(f.start) >= failLogWindow {
		f.start, f.logged = now, 0
	}
	if f.logged >= failLogBurst {
		f.dropped++
		f.mu.Unlock()
		return
	}
	f.logged++
	dropped := f.dropped
	f.dropped = 0
	f.mu.Unlock()
	msg := "worker: contract failed"
	if res.TimedOut {
		msg = "worker: contract timed out"
	}
	args := []any{"transaction_id", res.ID, "err", truncate(res.Error, failLogErrBytes)}
	if dropped > 0 {
		args = append(args, "not_logged", dropped)
	}
	logger.Warn(msg, args...)
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
