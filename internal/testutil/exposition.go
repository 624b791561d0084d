package testutil

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
)

// Exposition is a parsed Prometheus text exposition.
type Exposition struct {
	Help, Type map[string]string  // family → its HELP text, its TYPE
	Samples    map[string]float64 // series (name and labels) → value
}

// ParseExposition parses body, failing on anything the text format does
// not allow: a sample outside a declared family, a family declared twice,
// a malformed line.
func ParseExposition(tb testing.TB, body string) Exposition {
	tb.Helper()
	e := Exposition{Help: map[string]string{}, Type: map[string]string{}, Samples: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "), strings.HasPrefix(line, "# TYPE "):
			f := strings.SplitN(line, " ", 4)
			m := e.Help
			if f[1] == "TYPE" {
				m = e.Type
				if f[3] != "counter" && f[3] != "gauge" && f[3] != "histogram" {
					tb.Fatalf("bad type: %q", line)
				}
			}
			if _, dup := m[f[2]]; dup || len(f) != 4 {
				tb.Fatalf("duplicate or malformed: %q", line)
			}
			m[f[2]] = f[3]
		default:
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				tb.Fatalf("malformed sample %q", line)
			}
			series, name := line[:i], line[:i]
			if j := strings.IndexByte(series, '{'); j >= 0 {
				name = series[:j]
			}
			if base := histogramBase(name); e.Type[base] == "histogram" {
				name = base
			}
			if e.Type[name] == "" || e.Help[name] == "" {
				tb.Fatalf("sample %q before its HELP and TYPE", line)
			}
			if e.Type[name] == "counter" && !strings.HasSuffix(name, "_total") {
				tb.Fatalf("counter %s does not end in _total", name)
			}
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				tb.Fatalf("sample %q: %v", line, err)
			}
			e.Samples[series] = v
		}
	}
	return e
}

// histogramBase returns the family name of a histogram's sample name
// (name less _bucket, _sum or _count), or name.
func histogramBase(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return base
		}
	}
	return name
}
