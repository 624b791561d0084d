package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridmesh/gridmesh/internal/bench"
)

// system is one implementation under comparison.
type system struct {
	name string
	open func() (bench.Pair, error)
}

var systems = []system{
	{"gridmesh", bench.NewMux},
	{"grpc", bench.NewGRPCUnary},
	{"rawws", bench.NewRawWS},
}

// benchRow is one line of the table.
type benchRow struct {
	Workload string        `json:"workload"`
	System   string        `json:"system"`
	Size     int           `json:"size"`
	Callers  int           `json:"callers"`
	OpsPerS  float64       `json:"ops_per_sec"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
}

func runBench(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("bench", out)
	dur := fs.Duration("duration", 2*time.Second, "how long each measurement runs")
	sizes := fs.String("sizes", "64,512,4096", "payload sizes in bytes, comma-separated")
	callers := fs.String("callers", "1,16,64,256", "concurrent callers, comma-separated")
	only := fs.String("only", "", "run only these systems (gridmesh,grpc,rawws)")
	asJSON := fs.Bool("json", false, "print JSON rows instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	szs, err := parseInts(*sizes)
	if err != nil {
		return fmt.Errorf("-sizes: %w", err)
	}
	cls, err := parseInts(*callers)
	if err != nil {
		return fmt.Errorf("-callers: %w", err)
	}
	var rows []benchRow
	for _, sz := range szs {
		for _, c := range cls {
			for _, sys := range systems {
				if *only != "" && !strings.Contains(","+*only+",", ","+sys.name+",") {
					continue
				}
				res, err := measure(ctx, sys, bench.Load{PayloadSize: sz, Callers: c, Duration: *dur})
				if err != nil {
					return fmt.Errorf("%s size=%d callers=%d: %w", sys.name, sz, c, err)
				}
				rows = append(rows, benchRow{"request", sys.name, sz, c, res.OpsPerSec, res.P50, res.P99})
			}
		}
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

func measure(ctx context.Context, sys system, l bench.Load) (bench.Result, error) {
	p, err := sys.open()
	if err != nil {
		return bench.Result{}, err
	}
	defer p.Close()
	warm := l
	warm.Duration = 200 * time.Millisecond
	if _, err := bench.Run(ctx, p, warm); err != nil {
		return bench.Result{}, err
	}
	return bench.Run(ctx, p, l)
}

func printTable(out io.Writer, rows []benchRow) {
	// Ratios compare gridmesh with the others at the same size and callers.
	type key struct{ size, callers int }
	by := map[key]map[string]benchRow{}
	for _, r := range rows {
		k := key{r.Size, r.Callers}
		if by[k] == nil {
			by[k] = map[string]benchRow{}
		}
		by[k][r.System] = r
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tcallers\tsystem\tops/s\tp50\tp99\tvs grpc\tvs rawws\t")
	for _, r := range rows {
		vs := func(other string) string {
			o, ok := by[key{r.Size, r.Callers}][other]
			if r.System != "gridmesh" || !ok || o.OpsPerS == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", by[key{r.Size, r.Callers}]["gridmesh"].OpsPerS/o.OpsPerS)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.0f\t%v\t%v\t%s\t%s\t\n", r.Size, r.Callers, r.System, r.OpsPerS,
			r.P50.Round(100*time.Nanosecond), r.P99.Round(100*time.Nanosecond), vs("grpc"), vs("rawws"))
	}
	tw.Flush()
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
