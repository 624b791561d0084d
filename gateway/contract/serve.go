package contract

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Errors of ServeProcess. Match them with errors.Is.
var (
	// ErrCancelled is the cause (context.Cause) of a transaction's
	// context that ServeProcess cancelled because the worker sent a
	// cancel line for it: the worker gave up on it (its deadline passed,
	// or its caller cancelled it).
	ErrCancelled = errors.New("contract: transaction cancelled by the worker")
	// ErrConfig: ServeProcessOptions are invalid; the text names the field.
	ErrConfig = errors.New("contract: invalid options")
)

// maxRequestLine bounds a request line ServeProcess reads: a transaction
// of the grid's largest message, JSON escaping included.
const maxRequestLine = 4 * DefaultMaxLineBytes

// DefaultServeConcurrency is how many transactions ServeProcess runs at
// once: ServeProcessOptions.MaxConcurrent's default.
const DefaultServeConcurrency = 64

// ServeProcessOptions configure ServeProcessWith. The zero value works.
type ServeProcessOptions struct {
	// MaxConcurrent bounds the transactions running at once. While that
	// many run, no further line (cancel lines included) is read from
	// stdin: the host's lines wait in the pipe and its writes block, so a
	// host that sends more than that cannot make the process grow without
	// bound. A worker sends a
	// process at most its in_flight transactions at once (plus those it
	// gave up on and cancelled, until they end), so set it at least to
	// in_flight. Default DefaultServeConcurrency.
	MaxConcurrent int
}

// ServeProcess is the contract's side of the process line protocol, for
// contracts written in Go (see PROCESS.md), with the default options; see
// ServeProcessWith.
func ServeProcess(ctx context.Context, r io.Reader, w io.Writer, fn Func) error {
	return ServeProcessWith(ctx, r, w, fn, ServeProcessOptions{})
}

// ServeProcessWith is the contract's side of the process line protocol,
// for contracts written in Go (see PROCESS.md): it reads requests from r
// (the process's stdin), runs fn for each in a goroutine of its own, up
// to opts.MaxConcurrent at once, so that answers go out as they are
// ready, in any order, and writes each answer to w (stdout) as one line.
// A panic in fn becomes an answer with an error. fn's context derives
// from ctx; a cancel line from the host for the transaction cancels it,
// with ErrCancelled as its cause (context.Cause), and carries the
// request's trace context, if any (TraceParent). It tells the
// host that it takes cancel lines (the hello line) when the host says it
// sends them.
//
// It returns nil when r ends (the host closed stdin: time to exit) and
// every transaction read was answered, or else the first read, decode or
// write error, also once the transactions running were answered.
func ServeProcessWith(ctx context.Context, r io.Reader, w io.Writer, fn Func, opts ServeProcessOptions) error {
	if opts.MaxConcurrent < 0 {
		return fmt.Errorf("%w: ServeProcessOptions.MaxConcurrent must not be negative", ErrConfig)
	}
	if opts.MaxConcurrent == 0 {
		opts.MaxConcurrent = DefaultServeConcurrency
	}
	s := &processServer{
		ctx: ctx, fn: fn, w: w,
		slots:   make(chan struct{}, opts.MaxConcurrent),
		running: make(map[uint64]*servedRequest),
	}
	rerr := s.readLoop(r)
	s.wg.Wait()
	if rerr != nil {
		return rerr
	}
	return s.werr
}

// processServer is ServeProcessWith's state. Its caller's goroutine reads
// the lines (readLoop); each transaction runs on a goroutine of its own
// (run), which writes its answer.
type processServer struct {
	ctx   context.Context
	fn    Func
	slots chan struct{} // a token per running transaction: at most MaxConcurrent
	wg    sync.WaitGroup

	mu      sync.Mutex
	running map[uint64]*servedRequest // by request ID, for cancel lines

	wmu   sync.Mutex // serializes writes to w, and guards what follows
	w     io.Writer
	werr  error // the first write error
	hello bool  // the hello line was written
}

// servedRequest is a running transaction.
type servedRequest struct {
	cancel context.CancelCauseFunc
}

// readLoop reads lines until r ends or a line cannot be decoded. It
// waits for a free slot before it starts a transaction, and so reads
// nothing more while MaxConcurrent run.
func (s *processServer) readLoop(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxRequestLine)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		req := new(Request)
		if err := json.Unmarshal(sc.Bytes(), req); err != nil {
			return fmt.Errorf("contract: decode request line: %w", err)
		}
		if req.Cancel {
			s.cancel(req.ID)
			continue
		}
		if req.CanCancel {
			s.sayHello()
		}
		s.slots <- struct{}{}
		s.start(req)
	}
	return sc.Err()
}

// start runs req on a goroutine of its own; its slot is taken.
func (s *processServer) start(req *Request) {
	ctx, cancel := context.WithCancelCause(WithTraceContext(s.ctx, req.TraceParent, req.TraceState))
	sr := &servedRequest{cancel: cancel}
	s.mu.Lock()
	s.running[req.ID] = sr
	s.mu.Unlock()
	s.wg.Add(1)
	go s.run(ctx, req, sr)
}

// run runs one transaction, writes its answer and frees its slot.
func (s *processServer) run(ctx context.Context, req *Request, sr *servedRequest) {
	defer s.wg.Done()
	defer func() { <-s.slots }()
	defer s.forget(req.ID, sr)
	out, err := Call(ctx, s.fn, req.TransactionJSON, req.EnvVars, req.Secrets)
	a := Answer{ID: req.ID, ResultJSON: out.ResultJSON, OutputToChain: out.OutputToChain, Logs: out.Logs}
	if err != nil {
		a.Error = err.Error()
	}
	line, err := json.Marshal(a)
	s.write(append(line, '\n'), err)
}

// forget drops a finished transaction from the running ones.
func (s *processServer) forget(id uint64, sr *servedRequest) {
	s.mu.Lock()
	if s.running[id] == sr {
		delete(s.running, id)
	}
	s.mu.Unlock()
	sr.cancel(nil)
}

// cancel cancels the running transaction id; a cancel for a transaction
// that ended (its answer crossed the cancel) or never came is ignored.
func (s *processServer) cancel(id uint64) {
	s.mu.Lock()
	sr := s.running[id]
	s.mu.Unlock()
	if sr != nil {
		sr.cancel(ErrCancelled)
	}
}

// sayHello writes the hello line, once.
func (s *processServer) sayHello() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.hello {
		return
	}
	s.hello = true
	s.writeLocked([]byte(HelloLine), nil)
}

// write writes one line, unless encoding it failed (err) or an earlier
// write did; the first error is kept.
func (s *processServer) write(line []byte, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.writeLocked(line, err)
}

func (s *processServer) writeLocked(line []byte, err error) {
	if err == nil && s.werr == nil {
		_, err = s.w.Write(line)
	}
	if err != nil && s.werr == nil {
		s.werr = err
	}
}
