package config

import (
	"os"
	"runtime"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/defaults"
)

// Gateway is the gateway's YAML configuration: the Prime client's
// fields at the top level, the grid under "grid", and the gateway's own.
type Gateway struct {
	gateway.PrimeConfig `yaml:",inline"`
	// APIKeyFile names a file holding api_key (a trailing newline is
	// dropped): give one of the two.
	APIKeyFile string `yaml:"api_key_file"`
	Grid       Grid   `yaml:"grid"`
	Ops        `yaml:",inline"`
	// JournalPath is the bbolt file holding results until they reach
	// Prime. Default "gridmesh-gateway.db".
	JournalPath string `yaml:"journal_path"`
	// JournalRetention is how long a sent result stays in the journal to
	// answer redeliveries. Default 24h.
	JournalRetention time.Duration `yaml:"journal_retention"`
	// JournalMaxAge is how long a result stays in the journal at most,
	// sent or not (JournalOptions.MaxAge). Default 7 days.
	JournalMaxAge time.Duration `yaml:"journal_max_age"`
	// JournalMaxPendingMarks bounds the "sent" marks waiting for the
	// journal's disk (JournalOptions.MaxPendingMarks). Default 262144.
	JournalMaxPendingMarks int `yaml:"journal_max_pending_marks"`
	// TransactionTimeout bounds one transaction, re-dispatches included.
	// Default 60s.
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// DrainTimeout bounds the wait for transactions in flight at shutdown.
	// Default 30s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// HomeWait is how long a transaction whose worker's connection was
	// lost mid-run waits for that worker to come back and answer it from
	// its run, before it runs again on another
	// (gateway.DispatcherOptions.HomeWait). Default 5s.
	HomeWait time.Duration `yaml:"home_wait"`
	// MaxResultBytes bounds one response to Prime as encoded on the wire
	// (Options.MaxResultBytes): a result over it is answered with an error
	// instead, as Prime (a default gRPC server) refuses messages over
	// 4 MiB. Default gateway.DefaultMaxResultBytes (4 MiB less 64 KiB); at least
	// 1024.
	MaxResultBytes int `yaml:"max_result_bytes"`
}

// Worker is a worker's YAML configuration.
type Worker struct {
	Grid Grid `yaml:"grid"`
	Ops  `yaml:",inline"`
	// Capacity is how many transactions the worker runs at once. Default:
	// process.processes × process.in_flight when in_flight is set, else
	// the number of CPUs.
	Capacity int `yaml:"capacity"`
	// Mode is how Command runs: "exec" (the default) once per transaction,
	// the transaction JSON on stdin, the result JSON on stdout; "process"
	// as long-lived processes, supervised and restarted when they end,
	// that take transactions over the line protocol of PROCESS.md
	// (configured under Process).
	Mode string `yaml:"mode"`
	// Command is the contract's program and arguments (argv, no shell).
	// Required.
	Command []string `yaml:"command"`
	// Dir is the command's working directory. Default: the worker's.
	Dir string `yaml:"dir"`
	// Timeout bounds one transaction on top of the gateway's deadline
	// (mode exec: one run of Command, killed past it; mode process: the
	// wait for the answer, the process keeps running). Default 0: the
	// gateway's deadline only.
	Timeout time.Duration `yaml:"timeout"`
	// MaxLogBytes bounds the logs kept per transaction (mode exec: its
	// stderr; mode process: the answer's logs). Default 64 KiB.
	MaxLogBytes int `yaml:"max_log_bytes"`
	// MaxResultBytes bounds stdout (mode exec only). Default 4 MiB.
	MaxResultBytes int `yaml:"max_result_bytes"`
	// OutputToChain is reported with every result (mode exec only; in mode
	// process each answer says). Default true.
	OutputToChain *bool `yaml:"output_to_chain"`
	// Process configures mode process.
	Process *WorkerProcess `yaml:"process"`
	// DrainTimeout bounds the wait at shutdown (SIGINT, SIGTERM) for the
	// transactions running to finish, while new ones are refused and run
	// elsewhere by the gateway (Worker.Drain). Default 10s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// WorkerProcess is the "process" section of a worker's YAML
// configuration; see worker.ProcessConfig for each field's meaning.
type WorkerProcess struct {
	// Processes is how many processes run side by side. Default 1.
	Processes int `yaml:"processes"`
	// InFlight is how many transactions one process is sent at once.
	// Default: capacity spread over the processes.
	InFlight int `yaml:"in_flight"`
	// MaxLineBytes bounds one answer line. Default 16 MiB.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// RestartDelay is the base of the restart backoff. Default 100ms.
	RestartDelay time.Duration `yaml:"restart_delay"`
	// MaxRestartDelay caps the restart backoff. Default 30s.
	MaxRestartDelay time.Duration `yaml:"max_restart_delay"`
	// HealthyAfter is how long a process must run for the backoff to
	// start over. Default 30s.
	HealthyAfter time.Duration `yaml:"healthy_after"`
	// StopGrace is how long a process has to exit after its stdin is
	// closed at shutdown before its process group is killed. Default 5s.
	StopGrace time.Duration `yaml:"stop_grace"`
	// WedgedAfter is how many transactions in a row may pass their
	// deadline on one process without an answer before it is killed and
	// restarted. Default 3; negative: never.
	WedgedAfter int `yaml:"wedged_after"`
	// Env is added to the processes' environment ("NAME=value").
	Env []string `yaml:"env"`
}

// LoadGateway reads a gateway configuration from a YAML file.
func LoadGateway(path string) (*Gateway, error) {
	cfg := new(Gateway)
	if err := decodeYAML(path, cfg, os.LookupEnv); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate applies defaults, reads the files the configuration names
// (secrets, TLS), and reports the first invalid field.
func (c *Gateway) Validate() error {
	if err := readSecret(&c.APIKey, c.APIKeyFile, "api_key", "api_key_file"); err != nil {
		return err
	}
	if err := c.PrimeConfig.Validate(); err != nil {
		return primeError{err}
	}
	if err := c.Grid.validate(); err != nil {
		return err
	}
	if err := c.Ops.validate(&c.Grid); err != nil {
		return err
	}
	if c.JournalRetention < 0 || c.JournalMaxAge < 0 || c.JournalMaxPendingMarks < 0 || c.TransactionTimeout < 0 || c.DrainTimeout < 0 {
		return configError("journal_retention, journal_max_age, journal_max_pending_marks, transaction_timeout, drain_timeout", "must not be negative")
	}
	if c.HomeWait < 0 {
		return configError("home_wait", "must not be negative")
	}
	if err := checkMaxResultBytes("max_result_bytes", c.MaxResultBytes); err != nil {
		return err
	}
	if c.JournalPath == "" {
		c.JournalPath = "gridmesh-gateway.db"
	}
	defaults.Set(&c.JournalRetention, 24*time.Hour)
	defaults.Set(&c.TransactionTimeout, time.Minute)
	defaults.Set(&c.DrainTimeout, 30*time.Second)
	defaults.Set(&c.HomeWait, 5*time.Second)
	defaults.Set(&c.MaxResultBytes, gateway.DefaultMaxResultBytes)
	return nil
}

// checkMaxResultBytes checks a bound on results: 0 (the default) or at
// least gateway.MinResultBytes, room for the error answer that replaces a
// result over it.
func checkMaxResultBytes(field string, n int) error {
	if n != 0 && n < gateway.MinResultBytes {
		return configError(field, "%d is less than %d", n, gateway.MinResultBytes)
	}
	return nil
}

// LoadWorker reads a worker configuration from a YAML file.
func LoadWorker(path string) (*Worker, error) {
	cfg := new(Worker)
	if err := decodeYAML(path, cfg, os.LookupEnv); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate applies defaults, reads the files the configuration names
// (secrets, TLS), and reports the first invalid field.
func (c *Worker) Validate() error {
	if err := c.Grid.validate(); err != nil {
		return err
	}
	if err := c.Ops.validate(&c.Grid); err != nil {
		return err
	}
	if len(c.Command) == 0 || c.Command[0] == "" {
		return configError("command", "is required")
	}
	if c.Capacity < 0 || c.Timeout < 0 || c.MaxLogBytes < 0 || c.MaxResultBytes < 0 || c.DrainTimeout < 0 {
		return configError("capacity, timeout, max_log_bytes, max_result_bytes, drain_timeout", "must not be negative")
	}
	defaults.Set(&c.DrainTimeout, 10*time.Second)
	switch c.Mode {
	case "", worker.ModeExec:
		c.Mode = worker.ModeExec
		if c.Process != nil {
			return configError("process", "applies to mode %q only", worker.ModeProcess)
		}
	case worker.ModeProcess:
		defaults.Set(&c.MaxLogBytes, 64<<10)
		return c.validateProcess()
	default:
		return configError("mode", "%q is neither %q nor %q", c.Mode, worker.ModeExec, worker.ModeProcess)
	}
	defaults.Set(&c.Capacity, runtime.NumCPU())
	defaults.Set(&c.MaxLogBytes, 64<<10)
	defaults.Set(&c.MaxResultBytes, 4<<20)
	if c.OutputToChain == nil {
		t := true
		c.OutputToChain = &t
	}
	return nil
}

// validateProcess checks and defaults mode process's fields.
func (c *Worker) validateProcess() error {
	if c.MaxResultBytes != 0 {
		return configError("max_result_bytes", "applies to mode %q only; use process.max_line_bytes", worker.ModeExec)
	}
	if c.OutputToChain != nil {
		return configError("output_to_chain", "applies to mode %q only; in mode %q each answer says", worker.ModeExec, worker.ModeProcess)
	}
	if c.Process == nil {
		c.Process = new(WorkerProcess)
	}
	p := c.Process
	if p.Processes < 0 || p.InFlight < 0 || p.MaxLineBytes < 0 || p.RestartDelay < 0 ||
		p.MaxRestartDelay < 0 || p.HealthyAfter < 0 || p.StopGrace < 0 {
		return configError("process", "fields must not be negative")
	}
	defaults.Set(&p.Processes, 1)
	if c.Capacity == 0 && p.InFlight > 0 {
		c.Capacity = p.Processes * p.InFlight
	}
	defaults.Set(&c.Capacity, runtime.NumCPU())
	defaults.Set(&p.InFlight, (c.Capacity+p.Processes-1)/p.Processes)
	if c.Capacity > p.Processes*p.InFlight {
		return configError("capacity", "%d is more than process.processes × process.in_flight = %d", c.Capacity, p.Processes*p.InFlight)
	}
	return nil
}

// ProcessConfig returns the worker.ProcessConfig the worker's processes run
// with, in mode process.
func (c *Worker) ProcessConfig() worker.ProcessConfig {
	p := c.Process
	if p == nil {
		p = new(WorkerProcess)
	}
	return worker.ProcessConfig{
		Command: c.Command, Dir: c.Dir, Env: p.Env,
		Processes: p.Processes, InFlight: p.InFlight, Timeout: c.Timeout,
		MaxLineBytes: p.MaxLineBytes, MaxLogBytes: c.MaxLogBytes,
		RestartDelay: p.RestartDelay, MaxRestartDelay: p.MaxRestartDelay,
		HealthyAfter: p.HealthyAfter, StopGrace: p.StopGrace, WedgedAfter: p.WedgedAfter,
	}
}

// Exec returns the worker.ExecConfig the worker's command runs with.
func (c *Worker) Exec() worker.ExecConfig {
	return worker.ExecConfig{
		Command: c.Command, Dir: c.Dir, Timeout: c.Timeout,
		MaxLogBytes: c.MaxLogBytes, MaxResultBytes: c.MaxResultBytes,
		OutputToChain: c.OutputToChain == nil || *c.OutputToChain,
	}
}
