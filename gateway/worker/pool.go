package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/internal/backoff"
	"github.com/gridmesh/gridmesh/internal/defaults"
)

// Errors of contract processes (ProcessPool). Match them with errors.Is.
var (
	// ErrProcessExited: the contract process running the transaction
	// exited (it crashed, was killed, or closed its stdin); every
	// transaction in flight on it fails with it at once.
	ErrProcessExited = errors.New("worker: contract process exited")
	// ErrProcessProtocol: the contract process wrote a line that breaks
	// the line protocol (not JSON, no id, an id never sent, longer than
	// ProcessConfig.MaxLineBytes) or closed its stdout and kept running;
	// it is killed and restarted.
	ErrProcessProtocol = errors.New("worker: contract process broke the line protocol")
	// ErrProcessWedged: the contract process is alive but stopped
	// answering: ProcessConfig.WedgedAfter transactions in a row on it
	// got no answer before their deadline. It is killed and restarted;
	// the transactions still in flight on it fail with this error.
	ErrProcessWedged = errors.New("worker: contract process stopped answering")
	// ErrProcessDown: no contract process was running (it is being
	// restarted) or none had room before the transaction's deadline.
	ErrProcessDown = errors.New("worker: no contract process available")
	// ErrProcessClosed: the ProcessPool was closed.
	ErrProcessClosed = errors.New("worker: contract processes closed")
)

// ProcessConfig configures contract processes that live across
// transactions; see StartProcesses. Only Command is required.
type ProcessConfig struct {
	// Command is the program and its arguments (no shell). Required.
	Command []string
	// Dir is the working directory. Default: the current one.
	Dir string
	// Env is added ("NAME=value") to the processes' environment, which
	// otherwise holds only PATH and HOME from this process's. A
	// transaction's own env vars and secrets travel in its request line.
	Env []string
	// Processes is how many processes run side by side. Default 1.
	Processes int
	// InFlight is how many transactions one process is sent at once
	// (answers may come in any order). Default 1.
	InFlight int
	// Timeout bounds one transaction on top of its context's deadline.
	// Past it the caller gets an error and the process keeps running; it
	// is sent a cancel line for the transaction if it takes them (see
	// gateway/contract/PROCESS.md), and its late answer is dropped. 0: the context only.
	Timeout time.Duration
	// WedgedAfter is how many transactions in a row may pass their
	// deadline on one process without an answer before the process is
	// taken for wedged (alive, but stuck: a deadlock, a stopped read
	// loop), killed and restarted. Any answer, even a late one (to a
	// cancel line, say), starts the count over; a transaction cancelled
	// by its caller (not past its deadline) does not count. Default 3;
	// negative: never.
	WedgedAfter int
	// MaxLineBytes bounds one answer line; a longer one is a protocol
	// error. Default contract.DefaultMaxLineBytes.
	MaxLineBytes int
	// MaxLogBytes bounds an answer's logs; more is cut, with a note.
	// Default 64 KiB.
	MaxLogBytes int
	// RestartDelay is the base of the restart backoff: a process that
	// ended is started again after min(MaxRestartDelay, RestartDelay·2^n)
	// plus a jitter in [0, RestartDelay), n counting the restarts since
	// the last healthy run. Default 100 ms.
	RestartDelay time.Duration
	// MaxRestartDelay caps the restart backoff. Default 30 s.
	MaxRestartDelay time.Duration
	// HealthyAfter is how long a process must run for the backoff to start
	// over. Default 30 s.
	HealthyAfter time.Duration
	// StopGrace is how long Close waits for a process to exit after its
	// stdin was closed before it kills the process group. Default 5 s.
	StopGrace time.Duration
	// Logger receives starts, ends (a repeated reason at debug level)
	// and the processes' stderr lines. Default: discard.
	Logger *slog.Logger
}

func (c *ProcessConfig) defaults() error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return configError("command", "is required")
	}
	if c.Processes < 0 || c.InFlight < 0 || c.Timeout < 0 || c.MaxLineBytes < 0 || c.MaxLogBytes < 0 ||
		c.RestartDelay < 0 || c.MaxRestartDelay < 0 || c.HealthyAfter < 0 || c.StopGrace < 0 {
		return configError("process", "fields must not be negative")
	}
	c.Command = append([]string(nil), c.Command...)
	c.Env = append([]string(nil), c.Env...)
	defaults.Set(&c.Processes, 1)
	defaults.Set(&c.InFlight, 1)
	defaults.Set(&c.WedgedAfter, 3)
	defaults.Set(&c.MaxLineBytes, contract.DefaultMaxLineBytes)
	defaults.Set(&c.MaxLogBytes, 64<<10)
	defaults.Set(&c.RestartDelay, 100*time.Millisecond)
	defaults.Set(&c.MaxRestartDelay, 30*time.Second)
	defaults.Set(&c.HealthyAfter, 30*time.Second)
	defaults.Set(&c.StopGrace, 5*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ProcessPool runs a contract as long-lived processes, each supervised:
// transactions are sent to a process's stdin and answered on its stdout,
// one JSON object per line (the protocol is in gateway/contract/PROCESS.md), up to
// InFlight at once per process, matched by id. A transaction whose caller
// gives up (its context ends) before its answer is cancelled on the
// process with a cancel line, if the process said it takes them (as
// ServeProcess does); an older process is sent none. A process that exits, is
// killed or breaks the protocol fails every transaction in flight on it
// at once (ErrProcessExited, ErrProcessProtocol) and is started again
// after a backoff. Use its Contract method as a worker's Contract.
//
// All methods may be called concurrently. The pool owns one supervising
// goroutine per process slot, and per running process a reader, a writer
// and a stderr reader; Close waits for all of them.
type ProcessPool struct {
	cfg ProcessConfig
	log *slog.Logger

	mu      sync.Mutex
	slots   []*procSlot
	changed chan struct{} // closed and replaced when a slot's state changes
	closed  bool

	closing   chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once

	starts, ended, protocolErrs, wedged, late, cancelled atomic.Uint64
}

// procSlot is one supervised place for a process; its fields are guarded
// by ProcessPool.mu.
type procSlot struct {
	index    int
	cur      *process // nil while down
	inflight int
	lastErr  error // why the last process ended
}

// ProcessStats counts a ProcessPool's events.
type ProcessStats struct {
	Processes    int    `json:"processes"`     // process slots (ProcessConfig.Processes)
	Running      int    `json:"running"`       // processes up now
	InFlight     int    `json:"in_flight"`     // transactions sent and not yet answered
	Starts       uint64 `json:"starts"`        // processes started, the first ones included
	Ended        uint64 `json:"ended"`         // processes that ended other than by Close, or failed to start again
	ProtocolErrs uint64 `json:"protocol_errs"` // processes killed for breaking the protocol
	Wedged       uint64 `json:"wedged"`        // processes killed for answering nothing for WedgedAfter deadlines in a row
	LateAnswers  uint64 `json:"late_answers"`  // answers dropped: their caller had given up
	Cancelled    uint64 `json:"cancelled"`     // transactions given up on and cancelled on their process (a cancel line)
}

// StartProcesses starts cfg.Processes processes and supervises them. It
// fails if the command cannot be started at all (not found, not
// executable); later failures are retried with backoff.
func StartProcesses(cfg ProcessConfig) (*ProcessPool, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	p := &ProcessPool{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}), closing: make(chan struct{})}
	first := make([]*process, cfg.Processes)
	for i := range first {
		pr, err := p.startProcess(i)
		if err != nil {
			for _, pr := range first[:i] {
				pr.stop()
			}
			return nil, err
		}
		first[i] = pr
	}
	for i, pr := range first {
		s := &procSlot{index: i, cur: pr}
		p.slots = append(p.slots, s)
		p.wg.Add(1)
		go p.supervise(s, pr)
	}
	p.log.Info("worker: contract processes started", "command", cfg.Command, "processes", cfg.Processes, "in_flight", cfg.InFlight)
	return p, nil
}

// Capacity returns how many transactions the pool runs at once:
// Processes × InFlight. A worker using the pool should advertise it.
func (p *ProcessPool) Capacity() int { return p.cfg.Processes * p.cfg.InFlight }

// Stats returns the pool's counters.
func (p *ProcessPool) Stats() ProcessStats {
	st := ProcessStats{Processes: p.cfg.Processes, Starts: p.starts.Load(), Ended: p.ended.Load(), ProtocolErrs: p.protocolErrs.Load(),
		Wedged: p.wedged.Load(), LateAnswers: p.late.Load(), Cancelled: p.cancelled.Load()}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		if s.cur != nil {
			st.Running++
		}
		st.InFlight += s.inflight
	}
	return st
}

// Contract runs one transaction on a process; it is a Contract. The
// request line carries the trace context of ctx, if any (PROCESS.md). It waits
// for a process with room (one being restarted included) until ctx ends.
func (p *ProcessPool) Contract(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
	if p.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.Timeout)
		defer cancel()
	}
	s, pr, err := p.acquire(ctx)
	if err != nil {
		return contract.Output{}, err
	}
	defer p.release(s)
	parent, state := traceHeaders(ctx)
	return pr.call(ctx, &contract.Request{TransactionJSON: txJSON, EnvVars: env, Secrets: secrets, TraceParent: parent, TraceState: state})
}

// Close stops taking transactions, closes every process's stdin, waits up
// to StopGrace for them to exit, kills what is left (process groups) and
// waits for the pool's goroutines. Transactions still in flight when a
// process ends fail with ErrProcessClosed. Close is idempotent.
func (p *ProcessPool) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.broadcastLocked()
		p.mu.Unlock()
		close(p.closing)
		p.wg.Wait()
	})
	return nil
}

func (p *ProcessPool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// acquire waits for a running process with room and reserves a place on
// it: the least loaded one.
func (p *ProcessPool) acquire(ctx context.Context) (*procSlot, *process, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, nil, ErrProcessClosed
		}
		var best *procSlot
		running := 0
		var lastErr error
		for _, s := range p.slots {
			if s.cur == nil {
				lastErr = s.lastErr
				continue
			}
			running++
			if s.inflight < p.cfg.InFlight && (best == nil || s.inflight < best.inflight) {
				best = s
			}
		}
		if best != nil {
			best.inflight++
			pr := best.cur
			p.mu.Unlock()
			return best, pr, nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			if running == 0 {
				return nil, nil, fmt.Errorf("%w: none running (last ended: %v): %w", ErrProcessDown, lastErr, context.Cause(ctx))
			}
			return nil, nil, fmt.Errorf("%w: all %d busy: %w", ErrProcessDown, running, context.Cause(ctx))
		}
	}
}

func (p *ProcessPool) release(s *procSlot) {
	p.mu.Lock()
	s.inflight--
	p.broadcastLocked()
	p.mu.Unlock()
}

func (p *ProcessPool) setCurrent(s *procSlot, pr *process, ended error) {
	p.mu.Lock()
	s.cur = pr
	if ended != nil {
		s.lastErr = ended
	}
	p.broadcastLocked()
	p.mu.Unlock()
}

// supervise runs slot s's processes one after another until Close,
// starting with pr, already running: it waits for each to end and starts
// the next after the backoff. An end is logged at warning level when its
// reason differs from the last one logged so (forgotten once a process
// stays up HealthyAfter); an end for the same reason again is logged at
// debug level.
func (p *ProcessPool) supervise(s *procSlot, pr *process) {
	defer p.wg.Done()
	var (
		attempt    int    // restarts since the last healthy run
		lastLogged string // reason logged at warning level
		err        error  // why the last process ended, or could not start
	)
	for {
		if pr != nil {
			started := time.Now()
			err = pr.wait(p.closing, func() { p.setCurrent(s, nil, nil) })
			p.setCurrent(s, nil, err)
			if time.Since(started) >= p.cfg.HealthyAfter {
				attempt, lastLogged = 0, ""
			}
		}
		select {
		case <-p.closing:
			return
		default:
		}
		p.ended.Add(1)
		delay := backoff.Delay(p.cfg.RestartDelay, p.cfg.MaxRestartDelay, attempt)
		attempt++
		if reason := endReason(err); reason != lastLogged {
			lastLogged = reason
			p.log.Warn("worker: contract process ended; restarting with backoff (logged once per reason)",
				"slot", s.index, "err", err, "restarts", attempt, "delay", delay)
		} else {
			p.log.Debug("worker: contract process ended again", "slot", s.index, "err", err, "restarts", attempt, "delay", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-p.closing:
			t.Stop()
			return
		}
		if pr, err = p.startProcess(s.index); err != nil {
			p.setCurrent(s, nil, err)
		} else {
			p.setCurrent(s, pr, nil)
		}
	}
}

// endReason is the part of why a process ended that repeats from one
// process to the next (no pid, no stderr).
func endReason(err error) string {
	var pe *processError
	if errors.As(err, &pe) {
		return pe.reason
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
