package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/internal/defaults"
)

// ExecConfig configures a contract run as a command per transaction.
type ExecConfig struct {
	// Command is the program and its arguments (no shell). Required.
	Command []string
	// Dir is the working directory. Default: the current one.
	Dir string
	// Timeout bounds one run on top of the transaction's deadline. 0: the
	// deadline only.
	Timeout time.Duration
	// MaxLogBytes bounds the stderr kept as logs; more is cut, with a note.
	// Default 64 KiB.
	MaxLogBytes int
	// MaxResultBytes bounds stdout; more is an error. Default 4 MiB.
	MaxResultBytes int
	// OutputToChain is reported with every successful result.
	OutputToChain bool
	// KillGrace is how long the command's output pipes may stay open
	// after it was killed or exited (a leftover grandchild holding them).
	// Default 1 s.
	KillGrace time.Duration
}

// SecretEnvPrefix prefixes each secret's name in the command's
// environment: secret "secret-key" becomes SC_SECRET_SECRET_KEY.
const SecretEnvPrefix = "SC_SECRET_"

// ExecContract returns a Contract that runs cfg.Command once per
// transaction: the transaction JSON on its stdin; the transaction's env
// vars (as they are) and secrets (as SC_SECRET_<NAME>) in its environment,
// with PATH and HOME from the worker's, and, when the transaction is
// traced, its W3C trace context in TRACEPARENT and TRACESTATE (see
// package contract); its stdout, which must be JSON,
// as the result; its stderr (bounded) as the logs. A non-zero exit is an
// error. The command runs in its own process group, and when the
// transaction's deadline or cfg.Timeout passes, or the gateway gives up,
// the whole group is killed with SIGKILL, children included; children
// still running when the command exits are killed too. A contract that
// must keep state between transactions should use a Go Contract instead.
//
// A command that cannot be run (CheckCommand) is refused with ErrCommand.
func ExecContract(cfg ExecConfig) (contract.Func, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, configError("command", "is required")
	}
	if err := CheckCommand(cfg.Command, cfg.Dir); err != nil {
		return nil, err
	}
	defaults.Set(&cfg.MaxLogBytes, 64<<10)
	defaults.Set(&cfg.MaxResultBytes, 4<<20)
	defaults.Set(&cfg.KillGrace, time.Second)
	cfg.Command = append([]string(nil), cfg.Command...)
	return func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
		return runCommand(ctx, &cfg, txJSON, env, secrets)
	}, nil
}

func runCommand(ctx context.Context, cfg *ExecConfig, txJSON string, env, secrets map[string]string) (contract.Output, error) {
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, cfg.Command[0], cfg.Command[1:]...)
	cmd.Dir = cfg.Dir
	cmd.Env = commandEnv(env, secrets)
	if parent, state := traceHeaders(ctx); parent != "" {
		cmd.Env = append(cmd.Env, "TRACEPARENT="+parent) // last: it wins over a transaction's own
		if state != "" {
			cmd.Env = append(cmd.Env, "TRACESTATE="+state)
		}
	}
	cmd.Stdin = strings.NewReader(txJSON)
	stdout := &limitedBuffer{max: cfg.MaxResultBytes}
	stderr := &limitedBuffer{max: cfg.MaxLogBytes}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	setProcessGroup(cmd)
	cmd.WaitDelay = cfg.KillGrace
	err := cmd.Run()
	killGroup(cmd) // children left behind by a command that exited
	out := contract.Output{Logs: stderr.String()}
	switch {
	case ctx.Err() != nil:
		return out, fmt.Errorf("contract killed: %w", context.Cause(ctx))
	case err != nil && !errors.Is(err, exec.ErrWaitDelay):
		return out, fmt.Errorf("contract failed: %w", err)
	case stdout.cut:
		return out, fmt.Errorf("contract wrote more than %d bytes to stdout", cfg.MaxResultBytes)
	}
	result := bytes.TrimSpace(stdout.buf.Bytes())
	if !json.Valid(result) {
		return out, fmt.Errorf("contract wrote invalid JSON to stdout (%d bytes)", len(result))
	}
	out.ResultJSON, out.OutputToChain = string(result), cfg.OutputToChain
	return out, nil
}

// commandEnv builds a command's environment.
func commandEnv(env, secrets map[string]string) []string {
	out := make([]string, 0, len(env)+len(secrets)+2)
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	for k, v := range secrets {
		out = append(out, SecretEnvPrefix+envName(k)+"="+v)
	}
	return out
}

// envName turns a secret's name into an environment variable name.
func envName(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// limitedBuffer keeps the first max bytes written to it and notes that it
// cut the rest; writes never fail, so the command is not killed by
// SIGPIPE for talking too much.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room < len(p) {
		b.cut = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	if b.cut {
		return b.buf.String() + fmt.Sprintf("\n[logs cut at %d bytes]", b.max)
	}
	return b.buf.String()
}
