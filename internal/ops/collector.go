package ops

import (
	"bytes"
	"fmt"
	"io"
	"math"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gridmesh/gridmesh/internal/buildinfo"
)

// TextCollector is a prometheus.Collector over a writer of the text
// exposition format (a library's own metrics, e.g. what
// grid.Manager.MetricsHandler serves): at each scrape it writes them,
// parses them and hands them on as constant metrics, names, help and
// labels unchanged. It describes nothing in advance (an unchecked
// collector: the registry still refuses a name two collectors share at
// gather time). Counters, gauges and histograms (promtext.Histogram).
type TextCollector struct {
	writers []TextWriter
}

// TextWriter writes metrics in the text exposition format, as
// grid.Manager.WriteMetrics does.
type TextWriter func(io.Writer)

// NewTextCollector returns a collector of what the writers write, one
// after the other (their families must not share a name).
func NewTextCollector(writers ...TextWriter) *TextCollector {
	return &TextCollector{writers: writers}
}

// Describe describes nothing: see TextCollector.
func (c *TextCollector) Describe(chan<- *prometheus.Desc) {}

// Collect writes, parses and sends the metrics. A family that does not
// parse is sent as an invalid metric, which fails the scrape loudly.
func (c *TextCollector) Collect(ch chan<- prometheus.Metric) {
	var buf bytes.Buffer
	for _, w := range c.writers {
		w(&buf)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(prometheus.NewDesc("gridmesh_ops_invalid_exposition", "A library's exposition did not parse.", nil, nil), err)
		return
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			ch <- constMetric(f, m)
		}
	}
}

// constMetric converts one parsed sample.
func constMetric(f *dto.MetricFamily, m *dto.Metric) prometheus.Metric {
	names := make([]string, 0, len(m.GetLabel()))
	values := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		names = append(names, l.GetName())
		values = append(values, l.GetValue())
	}
	desc := prometheus.NewDesc(f.GetName(), f.GetHelp(), names, nil)
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		return prometheus.MustNewConstMetric(desc, prometheus.CounterValue, m.GetCounter().GetValue(), values...)
	case dto.MetricType_GAUGE:
		return prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, m.GetGauge().GetValue(), values...)
	case dto.MetricType_UNTYPED:
		return prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, m.GetUntyped().GetValue(), values...)
	case dto.MetricType_HISTOGRAM:
		h := m.GetHistogram()
		buckets := make(map[float64]uint64, len(h.GetBucket()))
		for _, b := range h.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), +1) { // implied by the count
				buckets[b.GetUpperBound()] = b.GetCumulativeCount()
			}
		}
		return prometheus.MustNewConstHistogram(desc, h.GetSampleCount(), h.GetSampleSum(), buckets, values...)
	}
	return prometheus.NewInvalidMetric(desc, fmt.Errorf("ops: %s: metric type %v is not carried", f.GetName(), f.GetType()))
}

// NewRegistry returns a registry holding the Go runtime's and the
// process's collectors, gridmesh_build_info, and cs.
func NewRegistry(cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	bi := buildinfo.Read()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gridmesh_build_info",
		Help: "Always 1; its labels say which build of gridmesh runs.",
		ConstLabels: prometheus.Labels{
			"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion,
		},
	})
	build.Set(1)
	all := append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build,
	}, cs...)
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ops: register metrics: %w", err)
		}
	}
	return reg, nil
}
