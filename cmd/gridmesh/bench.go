package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridmesh/gridmesh/internal/bench"
)

// The systems under comparison. grid is gridmesh as a cluster runs it: two
// grid nodes joined by their authenticated WebSocket. mux is gridmesh's mux
// alone over a TCP connection, without the WebSocket. Both are compared
// with grpc-go and with the raw WebSocket floor.
const (
	sysGrid = "grid"
	sysMux  = "mux"
	sysGRPC = "grpc"
	sysRaw  = "rawws"
)

var systems = []string{sysGrid, sysMux, sysGRPC, sysRaw}

// ours reports whether sys is gridmesh (whose rows carry ratios).
func ours(sys string) bool { return sys == sysGrid || sys == sysMux }

// benchConfig holds the settings of one `gridmesh bench` run.
type benchConfig struct {
	dur         time.Duration
	idleConns   int
	idleStreams int
	noRecycle   bool // leave responses to the garbage collector
}

// pair returns p as the run is configured to use it.
func (c benchConfig) pair(p bench.Pair) bench.Pair {
	if c.noRecycle {
		return bench.WithoutRecycle(p)
	}
	return p
}

// streamer is pair for a Streamer.
func (c benchConfig) streamer(s bench.Streamer) bench.Streamer {
	if c.noRecycle {
		return bench.WithoutRecycleStreams(s)
	}
	return s
}

// A workload is measured once per system that implements it.
type workload struct {
	name string
	// memory workloads report bytes per item in Mem instead of a rate.
	memUnit string
	run     map[string]measurement
}

// measurement measures a workload on one system: its rate and latency, or
// for memory workloads its bytes.
type measurement func(ctx context.Context, c benchConfig) (bench.Result, float64, error)

// pairLoad measures a closed-loop request workload on a fresh pair.
func pairLoad(newPair func() (bench.Pair, error), size, callers int) measurement {
	return func(ctx context.Context, c benchConfig) (bench.Result, float64, error) {
		p, err := newPair()
		if err != nil {
			return bench.Result{}, 0, err
		}
		defer p.Close()
		r, err := measure(ctx, c.pair(p), bench.Load{PayloadSize: size, Callers: callers, Duration: c.dur})
		return r, 0, err
	}
}

// streamLoad measures whole streams of msgs echoes on a fresh streamer.
func streamLoad(newStreamer func() (bench.Streamer, error), size, msgs, streams int) measurement {
	return func(ctx context.Context, c benchConfig) (bench.Result, float64, error) {
		s, err := newStreamer()
		if err != nil {
			return bench.Result{}, 0, err
		}
		defer s.Close()
		r, err := measure(ctx, bench.StreamCaller(c.streamer(s), msgs), bench.Load{PayloadSize: size, Callers: streams, Duration: c.dur})
		return r, 0, err
	}
}

func longStream(newStreamer func() (bench.Streamer, error), size int) measurement {
	return func(ctx context.Context, c benchConfig) (bench.Result, float64, error) {
		s, err := newStreamer()
		if err != nil {
			return bench.Result{}, 0, err
		}
		defer s.Close()
		if _, err := bench.RunLongStream(ctx, c.streamer(s), size, warmup(c.dur)); err != nil {
			return bench.Result{}, 0, err
		}
		r, err := bench.RunLongStream(ctx, c.streamer(s), size, c.dur)
		return r, 0, err
	}
}

func idleConn(newPair func() (bench.Pair, error)) measurement {
	return func(ctx context.Context, c benchConfig) (bench.Result, float64, error) {
		m, err := bench.IdleConnBytes(ctx, newPair, c.idleConns)
		return bench.Result{}, m, err
	}
}

// idleGridConn measures idle grid connections with their nodes in the
// baseline (see bench.IdleGridConnBytes).
func idleGridConn(ctx context.Context, c benchConfig) (bench.Result, float64, error) {
	m, err := bench.IdleGridConnBytes(ctx, c.idleConns)
	return bench.Result{}, m, err
}

func idleStreams(newStreamer func() (bench.Streamer, error)) measurement {
	return func(ctx context.Context, c benchConfig) (bench.Result, float64, error) {
		s, err := newStreamer()
		if err != nil {
			return bench.Result{}, 0, err
		}
		defer s.Close()
		m, err := bench.IdleStreamBytes(ctx, s, c.idleStreams)
		return bench.Result{}, m * float64(c.idleStreams), err
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// workloads lists every workload in the order the table shows them.
func workloads() []workload {
	var ws []workload
	for _, size := range []int{64, 512, 4 << 10, 1 << 20} {
		for _, callers := range []int{1, 2, 16, 64, 256} {
			ws = append(ws, workload{
				name: fmt.Sprintf("req/%s/c%d", sizeName(size), callers),
				run: map[string]measurement{
					sysGrid: pairLoad(bench.NewGrid, size, callers),
					sysMux:  pairLoad(bench.NewMux, size, callers),
					sysGRPC: pairLoad(bench.NewGRPCUnary, size, callers),
					sysRaw:  pairLoad(bench.NewRawWS, size, callers),
				},
			})
		}
	}
	for _, n := range []int{4, 8, 16} {
		ws = append(ws, workload{
			name: fmt.Sprintf("mesh/512B/n%d/c64", n),
			run: map[string]measurement{
				sysGrid: pairLoad(func() (bench.Pair, error) { return bench.NewGridMesh(n) }, 512, 64),
				sysGRPC: pairLoad(func() (bench.Pair, error) { return bench.NewGRPCMesh(n) }, 512, 64),
			},
		})
	}
	for _, callers := range []int{16, 64} {
		ws = append(ws, workload{
			name: fmt.Sprintf("bidi/512B/c%d", callers),
			run: map[string]measurement{
				sysGrid: pairLoad(bench.NewGridBidi, 512, callers),
				sysMux:  pairLoad(bench.NewMuxBidi, 512, callers),
				sysGRPC: pairLoad(bench.NewGRPCBidi, 512, callers),
				sysRaw:  pairLoad(bench.NewRawWSBidi, 512, callers),
			},
		})
	}
	for _, streams := range []int{2, 8, 64} {
		ws = append(ws, workload{
			name: fmt.Sprintf("stream10x512B/s%d", streams),
			run: map[string]measurement{
				sysGrid: streamLoad(bench.NewGridStream, 512, 10, streams),
				sysMux:  streamLoad(bench.NewMuxStream, 512, 10, streams),
				sysGRPC: streamLoad(bench.NewGRPCStream, 512, 10, streams),
			},
		})
	}
	ws = append(ws,
		workload{
			name: "longstream/512B",
			run: map[string]measurement{
				sysGrid: longStream(bench.NewGridStream, 512),
				sysMux:  longStream(bench.NewMuxStream, 512),
				sysGRPC: longStream(bench.NewGRPCStream, 512),
			},
		},
		workload{
			name: "idle/conn", memUnit: "per conn",
			run: map[string]measurement{
				sysGrid: idleGridConn,
				sysMux:  idleConn(bench.NewMux),
				sysGRPC: idleConn(bench.NewGRPCUnary),
				sysRaw:  idleConn(bench.NewRawWS),
			},
		},
		workload{
			name: "idle/streams", memUnit: "total",
			run: map[string]measurement{
				sysGrid: idleStreams(bench.NewGridStream),
				sysMux:  idleStreams(bench.NewMuxStream),
				sysGRPC: idleStreams(bench.NewGRPCStream),
			},
		},
	)
	return ws
}

// benchRow is one measurement: a workload on one system. Ratios are set on
// gridmesh rows: gridmesh's figure divided by the other system's.
type benchRow struct {
	Workload    string            `json:"workload"`
	System      string            `json:"system"`
	OpsPerSec   float64           `json:"ops_per_sec,omitempty"`
	P50         time.Duration     `json:"p50_ns,omitempty"`
	P99         time.Duration     `json:"p99_ns,omitempty"`
	AllocsPerOp float64           `json:"allocs_per_op,omitempty"`
	BytesPerOp  float64           `json:"bytes_per_op,omitempty"`
	CPUPerOp    time.Duration     `json:"cpu_per_op_ns,omitempty"`
	CPUUse      float64           `json:"cpu_use,omitempty"`     // CPU time per wall time: 2.0 is two cores busy
	RunqP99     time.Duration     `json:"runq_p99_ns,omitempty"` // how long runnable goroutines waited for a P (99th percentile)
	Mem         float64           `json:"mem_bytes,omitempty"`
	MemUnit     string            `json:"mem_unit,omitempty"`
	Vs          map[string]ratios `json:"vs,omitempty"`
}

// ratios are gridmesh's figures divided by another system's; 0 when either
// figure is missing.
type ratios struct {
	OpsPerSec   float64 `json:"ops_per_sec,omitempty"`
	P50         float64 `json:"p50,omitempty"`
	P99         float64 `json:"p99,omitempty"`
	AllocsPerOp float64 `json:"allocs_per_op,omitempty"`
	BytesPerOp  float64 `json:"bytes_per_op,omitempty"`
	CPUPerOp    float64 `json:"cpu_per_op,omitempty"`
	Mem         float64 `json:"mem,omitempty"`
}

func ratio(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

func compare(g, o benchRow) ratios {
	return ratios{
		OpsPerSec:   ratio(g.OpsPerSec, o.OpsPerSec),
		P50:         ratio(float64(g.P50), float64(o.P50)),
		P99:         ratio(float64(g.P99), float64(o.P99)),
		AllocsPerOp: ratio(g.AllocsPerOp, o.AllocsPerOp),
		BytesPerOp:  ratio(g.BytesPerOp, o.BytesPerOp),
		CPUPerOp:    ratio(float64(g.CPUPerOp), float64(o.CPUPerOp)),
		Mem:         ratio(g.Mem, o.Mem),
	}
}

func runBench(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("bench", out)
	dur := fs.Duration("duration", time.Second, "how long each measurement runs (plus a warm-up of a fifth of it)")
	only := fs.String("only", "", "run only the workloads whose name matches this regular expression; names: req/{64B,512B,4KiB,1MiB}/c{1,2,16,64,256}, mesh/512B/n{4,8,16}/c64, bidi/512B/c{16,64}, stream10x512B/s{2,8,64}, longstream/512B, idle/conn, idle/streams")
	asJSON := fs.Bool("json", false, "print one JSON object per measurement instead of a table")
	conns := fs.Int("idle-conns", 100, "connections opened for the idle/conn workload")
	streams := fs.Int("idle-streams", 10000, "streams opened for the idle/streams workload")
	recycle := fs.Bool("recycle", true, "hand every gridmesh response and stream message back with mux.Recycle once checked, as a program that reuses buffers does (false: leave them to the garbage collector)")
	tracing := fs.Bool("trace", false, "trace every gridmesh call with OpenTelemetry: an SDK tracer provider that samples every span and exports them, batched, to nowhere (the cost of tracing without a collector's)")
	metrics := fs.Bool("metrics", true, "count every gridmesh call in the grid's per-handler metrics, as the grid does by default (false: grid.Options.DisableMetrics, to measure what they cost)")
	inline := fs.Bool("inline", false, "register gridmesh's echo handler inline (handlers.Registry.RegisterInline): it runs on the connection's reader instead of a worker, as a handler that finishes in microseconds may")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	bench.DisableMetrics, bench.InlineEcho = !*metrics, *inline
	defer func() { bench.DisableMetrics, bench.InlineEcho = false, false }()
	if *tracing {
		tp := bench.NewDiscardingTracerProvider()
		bench.TracerProvider = tp
		defer func() {
			bench.TracerProvider = nil
			tp.Shutdown(context.Background())
		}()
	}
	if *dur <= 0 || *conns < 1 || *streams < 1 {
		return fmt.Errorf("-duration, -idle-conns and -idle-streams must be positive")
	}
	re, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("-only: %w", err)
	}
	cfg := benchConfig{dur: *dur, idleConns: *conns, idleStreams: *streams, noRecycle: !*recycle}
	var rows []benchRow
	for _, w := range workloads() {
		if !re.MatchString(w.name) {
			continue
		}
		group, err := runWorkload(ctx, w, cfg)
		if err != nil {
			return err
		}
		rows = append(rows, group...)
	}
	if len(rows) == 0 {
		return fmt.Errorf("-only %q matches no workload", *only)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	printTable(out, rows)
	return nil
}

// runWorkload measures w on every system that has it, in turn, and sets
// the ratios of gridmesh's rows to the others'.
func runWorkload(ctx context.Context, w workload, cfg benchConfig) ([]benchRow, error) {
	var group []benchRow
	for _, sys := range systems {
		run, ok := w.run[sys]
		if !ok {
			continue
		}
		runtime.GC() // each measurement starts from a collected heap, whatever ran before it
		res, mem, err := run(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s on %s: %w", w.name, sys, err)
		}
		group = append(group, benchRow{
			Workload: w.name, System: sys, OpsPerSec: res.OpsPerSec, P50: res.P50, P99: res.P99,
			AllocsPerOp: res.AllocsPerOp, BytesPerOp: res.BytesPerOp, CPUPerOp: res.CPUPerOp, CPUUse: res.CPUUse,
			RunqP99: res.RunqP99,
			Mem:     mem, MemUnit: w.memUnit,
		})
	}
	for i := range group {
		if !ours(group[i].System) {
			continue
		}
		for _, o := range group {
			if ours(o.System) {
				continue
			}
			if group[i].Vs == nil {
				group[i].Vs = map[string]ratios{}
			}
			group[i].Vs[o.System] = compare(group[i], o)
		}
	}
	return group, nil
}

func warmup(d time.Duration) time.Duration { return max(d/5, 10*time.Millisecond) }

// measure warms c up, then runs l on it.
func measure(ctx context.Context, c bench.Caller, l bench.Load) (bench.Result, error) {
	warm := l
	warm.Duration = warmup(l.Duration)
	if _, err := bench.Run(ctx, c, warm); err != nil {
		return bench.Result{}, err
	}
	return bench.Run(ctx, c, l)
}

// printTable prints one table: a row per system and, under gridmesh's row,
// a row per other system with gridmesh's figures divided by that system's.
func printTable(out io.Writer, rows []benchRow) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tsystem\tops/s\tp50\tp99\tallocs/op\tB/op\tCPU/op\tCPU\trunq p99\tmemory\t")
	for i, r := range rows {
		name := r.Workload
		if i > 0 && rows[i-1].Workload == r.Workload {
			name = ""
		}
		mem := "-"
		if r.MemUnit != "" {
			mem = fmt.Sprintf("%s %s", fmtBytes(r.Mem), r.MemUnit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, r.System, fmtNum(r.OpsPerSec, "%.0f"),
			fmtDur(r.P50), fmtDur(r.P99), fmtNum(r.AllocsPerOp, "%.1f"), fmtNum(r.BytesPerOp, "%.0f"),
			fmtDur(r.CPUPerOp), fmtNum(100*r.CPUUse, "%.0f%%"), fmtDur(r.RunqP99), mem)
		for _, sys := range systems {
			v, ok := r.Vs[sys]
			if !ok {
				continue
			}
			fmt.Fprintf(tw, "\t÷%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t%s\t\n", sys, fmtRatio(v.OpsPerSec), fmtRatio(v.P50),
				fmtRatio(v.P99), fmtRatio(v.AllocsPerOp), fmtRatio(v.BytesPerOp), fmtRatio(v.CPUPerOp), fmtRatio(v.Mem))
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "\ngrid: gridmesh between two grid nodes over their WebSocket; mux: gridmesh's mux alone over TCP.")
	fmt.Fprintln(out, "÷grpc, ÷rawws: the figure above divided by that system's (ops/s: higher is better; the rest: lower is better).")
	fmt.Fprintln(out, "allocs/op and B/op count both ends; req: one round trip; stream10x512B: one whole stream incl. setup;")
	fmt.Fprintln(out, "longstream: one echoed message; idle/conn: heap+stacks per idle used connection, both ends; idle/streams: heap+stacks of all idle streams.")
	fmt.Fprintln(out, "mesh/512B/nN/c64: N nodes, every one connected to every other, 64 callers each from a random node to another (grpc: a ClientConn per ordered pair).")
	fmt.Fprintln(out, "CPU/op: the process's CPU time (all nodes, both ends) per op; CPU: CPU time per wall time (200% is both cores of this machine).")
	fmt.Fprintln(out, "runq p99: how long the process's runnable goroutines waited for the scheduler to run them (99th percentile, bucketed); long waits with CPU left idle mean wake-ups, not work, set the pace.")
}

func fmtNum(v float64, f string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(f, v)
}

func fmtRatio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return d.Round(100 * time.Nanosecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

func fmtBytes(b float64) string {
	switch {
	case b >= 10<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 10<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return strings.TrimSpace(fmt.Sprintf("%.0f B", b))
}
