package testtrace

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Recorder is a TracerProvider that keeps every span in memory.
type Recorder struct {
	Provider *sdktrace.TracerProvider
	rec      *tracetest.SpanRecorder
}

// New returns a Recorder that samples every span; its provider is shut
// down at tb's cleanup.
func New(tb testing.TB) *Recorder {
	r := &Recorder{rec: tracetest.NewSpanRecorder()}
	r.Provider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	tb.Cleanup(func() { _ = r.Provider.Shutdown(context.Background()) })
	return r
}

// Ended returns the spans that ended, in the order they ended.
func (r *Recorder) Ended() []sdktrace.ReadOnlySpan { return r.rec.Ended() }

// Open returns the names of the spans started and not ended: after the
// traced code stopped, there must be none.
func (r *Recorder) Open() []string {
	ended := map[trace.SpanID]bool{}
	for _, s := range r.rec.Ended() {
		ended[s.SpanContext().SpanID()] = true
	}
	var open []string
	for _, s := range r.rec.Started() {
		if !ended[s.SpanContext().SpanID()] {
			open = append(open, s.Name())
		}
	}
	return open
}

// Attr returns the value of attribute key of s as text, or "".
func Attr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// Find returns the ended spans named name whose attribute key is value
// (any, when key is ""), in start order.
func Find(spans []sdktrace.ReadOnlySpan, name string, key attribute.Key, value string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name && (key == "" || Attr(s, key) == value) {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartTime().Before(out[j].StartTime()) })
	return out
}

// Trace returns the ended spans of trace id, parents before their
// children, siblings in start order.
func Trace(spans []sdktrace.ReadOnlySpan, id trace.TraceID) []sdktrace.ReadOnlySpan {
	var in []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanContext().TraceID() == id {
			in = append(in, s)
		}
	}
	sort.SliceStable(in, func(i, j int) bool { return in[i].StartTime().Before(in[j].StartTime()) })
	known := map[trace.SpanID]bool{}
	for _, s := range in {
		known[s.SpanContext().SpanID()] = true
	}
	var out []sdktrace.ReadOnlySpan
	var walk func(parent trace.SpanID, root bool)
	walk = func(parent trace.SpanID, root bool) {
		for _, s := range in {
			p := s.Parent().SpanID()
			if (root && !known[p]) || (!root && p == parent) {
				out = append(out, s)
				walk(s.SpanContext().SpanID(), false)
			}
		}
	}
	walk(trace.SpanID{}, true)
	return out
}

// Format prints spans one a line, indented under their parents: name,
// kind, span ID, parent ID, duration, status and the attributes (sorted), then
// the events and links.
func Format(spans []sdktrace.ReadOnlySpan) string {
	depth := map[trace.SpanID]int{}
	var b strings.Builder
	for _, s := range spans {
		d := 0
		if pd, ok := depth[s.Parent().SpanID()]; ok {
			d = pd + 1
		}
		depth[s.SpanContext().SpanID()] = d
		parent := "-"
		if s.Parent().IsValid() {
			parent = s.Parent().SpanID().String()
		}
		var attrs []string
		for _, kv := range s.Attributes() {
			attrs = append(attrs, fmt.Sprintf("%s=%s", kv.Key, kv.Value.String()))
		}
		slices.Sort(attrs)
		fmt.Fprintf(&b, "%s%-22s %-8s span %s parent %s %8.3fms %s %s\n", strings.Repeat("  ", d), s.Name(), s.SpanKind(),
			s.SpanContext().SpanID(), parent, float64(s.EndTime().Sub(s.StartTime()).Microseconds())/1000,
			status(s), strings.Join(attrs, " "))
		for _, e := range s.Events() {
			var ea []string
			for _, kv := range e.Attributes {
				ea = append(ea, fmt.Sprintf("%s=%s", kv.Key, kv.Value.String()))
			}
			fmt.Fprintf(&b, "%s  event %q %s\n", strings.Repeat("  ", d), e.Name, strings.Join(ea, " "))
		}
		for _, l := range s.Links() {
			fmt.Fprintf(&b, "%s  link trace %s span %s\n", strings.Repeat("  ", d), l.SpanContext.TraceID(), l.SpanContext.SpanID())
		}
	}
	return b.String()
}

func status(s sdktrace.ReadOnlySpan) string {
	st := s.Status()
	if st.Description != "" {
		return fmt.Sprintf("[%s: %.60s]", st.Code, st.Description)
	}
	return "[" + st.Code.String() + "]"
}
