package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/internal/bench"
)

// benchShort is the short setting tests run `gridmesh bench` with.
var benchShort = []string{"--duration=20ms", "--idle-conns=3", "--idle-streams=20"}

// benchOneJSON runs the one workload whose figures tests check, as JSON,
// for long enough that a loaded machine completes calls in it (20 ms
// could end with none).
var benchOneJSON = []string{"--duration=200ms", "--idle-conns=3", "--idle-streams=20", "--json", "--only=^req/64B/c2$"}

// TestBenchTable runs every workload of `gridmesh bench` briefly and checks
// that the table has a row per workload and system and the ratio rows.
func TestBenchTable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every workload")
	}
	var out bytes.Buffer
	only := "req/512B/c(1|64)$|req/1MiB/c2$|bidi/512B/c16|stream10x512B/s8|longstream|idle"
	if err := runBench(context.Background(), append(benchShort, "--only="+only), &out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, want := range []string{
		"req/512B/c1", "req/512B/c64", "req/1MiB/c2", "bidi/512B/c16", "stream10x512B/s8",
		"longstream/512B", "idle/conn", "idle/streams", "÷grpc", "÷rawws", "allocs/op", " grid ", " mux ",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "req/64B") {
		t.Errorf("--only did not filter:\n%s", table)
	}
	t.Log("\n" + table)
}

// TestBenchJSON checks the --json output: one object per measurement, with
// gridmesh's ratios.
func TestBenchJSON(t *testing.T) {
	var out bytes.Buffer
	if err := runBench(context.Background(), benchOneJSON, &out); err != nil {
		t.Fatal(err)
	}
	var rows []benchRow
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r benchRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		rows = append(rows, r)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4 (grid, mux, grpc, rawws): %+v", len(rows), rows)
	}
	for i, sys := range []string{sysGrid, sysMux} {
		g := rows[i]
		if g.System != sys || g.OpsPerSec <= 0 || g.P50 <= 0 || g.P50 > time.Minute || g.RunqP99 <= 0 {
			t.Errorf("%s row: %+v", sys, g)
		}
		if g.Vs[sysGRPC].OpsPerSec <= 0 || g.Vs[sysRaw].OpsPerSec <= 0 || len(g.Vs) != 2 {
			t.Errorf("%s ratios: %+v", sys, g.Vs)
		}
	}
	if rows[2].Vs != nil || rows[3].Vs != nil {
		t.Errorf("ratios on another system's row: %+v", rows[2:])
	}
}

func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--only=(("},
		{"--only=nothing-matches-this"},
		{"--duration=0s"},
	} {
		if err := runBench(context.Background(), args, new(bytes.Buffer)); err == nil {
			t.Errorf("bench %v succeeded", args)
		}
	}
}

// TestBenchTrace: --trace traces the grid's calls (spans cost allocations
// a call without them does not make), and leaves no tracer behind.
func TestBenchTrace(t *testing.T) {
	gridAllocs := func(args ...string) float64 {
		var out bytes.Buffer
		if err := runBench(context.Background(), append(benchOneJSON, args...), &out); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			var r benchRow
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%v: %s", err, sc.Text())
			}
			if r.System == "grid" {
				return r.AllocsPerOp
			}
		}
		t.Fatalf("no grid row:\n%s", out.String())
		return 0
	}
	plain, traced := gridAllocs(), gridAllocs("--trace")
	t.Logf("allocs/op: %.1f untraced, %.1f traced", plain, traced)
	if traced < plain+5 {
		t.Fatalf("--trace: %.1f allocs/op, untraced %.1f: no spans made?", traced, plain)
	}
	if bench.TracerProvider != nil {
		t.Fatal("--trace left bench.TracerProvider set")
	}
}

// TestBenchInline: --inline measures with the echo registered inline, and
// leaves the default behind.
func TestBenchInline(t *testing.T) {
	var out bytes.Buffer
	if err := runBench(context.Background(), append(benchOneJSON, "--inline"), &out); err != nil {
		t.Fatal(err)
	}
	if bench.InlineEcho {
		t.Fatal("--inline left bench.InlineEcho set")
	}
	var grid int
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r benchRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		if r.System == "grid" || r.System == "mux" {
			grid++
			if r.OpsPerSec <= 0 {
				t.Fatalf("%s: no calls measured: %s", r.System, sc.Text())
			}
		}
	}
	if grid != 2 {
		t.Fatalf("%d gridmesh rows, want grid and mux:\n%s", grid, out.String())
	}
}
