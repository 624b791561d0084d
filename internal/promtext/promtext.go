package promtext

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ContentType is the Content-Type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Family is one metric family whose value is read from stats of type T.
type Family[T any] struct {
	Name string // e.g. "gridmesh_peer_up"; counters end in _total
	Kind string // "counter" or "gauge"
	Help string
	// Value reads the family's value from one part's stats.
	Value func(T) float64
}

// Counter returns a counter family; its name should end in _total.
func Counter[T any](name, help string, value func(T) float64) Family[T] {
	return Family[T]{Name: name, Kind: "counter", Help: help, Value: value}
}

// Gauge returns a gauge family.
func Gauge[T any](name, help string, value func(T) float64) Family[T] {
	return Family[T]{Name: name, Kind: "gauge", Help: help, Value: value}
}

// WriteHeader writes a family's HELP and TYPE lines.
func WriteHeader(w io.Writer, name, kind, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

// WriteFamilies writes each family of fs with its one unlabelled value
// read from v.
func WriteFamilies[T any](w io.Writer, fs []Family[T], v T) {
	for _, f := range fs {
		WriteHeader(w, f.Name, f.Kind, f.Help)
		fmt.Fprintf(w, "%s %g\n", f.Name, f.Value(v))
	}
}

// WriteLabelled writes each family of fs with one series per row,
// labelled label="<labelOf(row)>", rows in the order given.
func WriteLabelled[T any](w io.Writer, fs []Family[T], label string, rows []T, labelOf func(T) string) {
	for _, f := range fs {
		WriteHeader(w, f.Name, f.Kind, f.Help)
		for _, r := range rows {
			fmt.Fprintf(w, "%s{%s=\"%s\"} %g\n", f.Name, label, EscapeLabel(labelOf(r)), f.Value(r))
		}
	}
}

// WriteSample writes one sample of family name (its header written
// before) with the labels given as name and value pairs.
func WriteSample(w io.Writer, name string, v float64, labels ...string) {
	if len(labels) < 2 {
		fmt.Fprintf(w, "%s %g\n", name, v)
		return
	}
	io.WriteString(w, name+"{")
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			io.WriteString(w, ",")
		}
		fmt.Fprintf(w, "%s=\"%s\"", labels[i], EscapeLabel(labels[i+1]))
	}
	fmt.Fprintf(w, "} %g\n", v)
}

// Bool is 1 for true and 0 for false, as gauges of a condition read.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// EscapeLabel escapes a label value as the text format requires:
// backslash, double quote and newline.
func EscapeLabel(v string) string { return labelEscaper.Replace(v) }

// JSONHandler answers GET and HEAD with snapshot's value as indented JSON.
func JSONHandler[T any](snapshot func() T) http.Handler {
	return Handler("application/json", func(w io.Writer) {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snapshot())
	})
}

// Handler answers GET and HEAD with what write writes, buffered, under
// contentType and Cache-Control: no-store; other methods get 405.
func Handler(contentType string, write func(io.Writer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-store")
		bw := bufio.NewWriter(w)
		write(bw)
		_ = bw.Flush()
	})
}
