package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing in the command is off unless the standard OpenTelemetry
// environment turns it on (README, "Tracing"):
//
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none: off;
//   - OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint set
//     (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): on,
//     exporting OTLP over HTTP/protobuf, or gRPC when
//     OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL is "grpc".
//
// The exporters read the rest of OTEL_EXPORTER_OTLP_* themselves
// (endpoint, headers, TLS, timeout, compression), the SDK reads
// OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* and the span limits, and the
// resource OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.

// tracingShutdownTimeout bounds the flush of the spans still queued at
// exit.
const tracingShutdownTimeout = 5 * time.Second

// errTracingConfig: the OTEL_* environment asks for what the command
// cannot do; the text names the variable.
var errTracingConfig = errors.New("tracing")

// startTracing returns the TracerProvider the OTEL_* environment (getenv)
// asks for, for a node of the given role ("gateway", "worker", "demo")
// named local in the grid, and a function that flushes and stops it; a
// nil provider (tracing off) and a no-op function when it is off.
func startTracing(ctx context.Context, getenv func(string) string, role, local string, logger *slog.Logger) (trace.TracerProvider, func(), error) {
	on, err := tracingWanted(getenv)
	if err != nil || !on {
		return nil, func() {}, err
	}
	exp, protocol, err := newExporter(ctx, getenv)
	if err != nil {
		return nil, nil, err
	}
	attrs := []resource.Option{
		resource.WithAttributes(semconv.ServiceName("gridmesh-" + role)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	}
	if local != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceInstanceID(local)))
	}
	res, err := resource.New(ctx, attrs...)
	if err != nil {
		logger.Warn("tracing: resource incomplete", "err", err) // a bad OTEL_RESOURCE_ATTRIBUTES entry: the rest is kept
	}
	if res == nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)) // OTEL_TRACES_SAMPLER applies
	otel.SetTextMapPropagator(propagation.TraceContext{})
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Warn("tracing: export failed", "err", err) }))
	logger.Info("tracing: on", "exporter", "otlp", "protocol", protocol, "service", serviceName(res))
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingShutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			logger.Warn("tracing: flush at exit failed", "err", err)
		}
	}, nil
}

// tracingWanted reads whether the environment turns tracing on.
func tracingWanted(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	exporters := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if exporters == "" {
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	}
	on := false
	for _, e := range strings.Split(exporters, ",") {
		switch strings.TrimSpace(e) {
		case "none":
			return false, nil
		case "otlp":
			on = true
		default:
			return false, fmt.Errorf("%w: OTEL_TRACES_EXPORTER: %q is not supported (otlp or none)", errTracingConfig, e)
		}
	}
	return on, nil
}

// newExporter returns the OTLP exporter the protocol variables ask for
// and the protocol's name.
func newExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, string, error) {
	name, protocol := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		name, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch protocol {
	case "", "http/protobuf":
		protocol = "http/protobuf"
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, "", fmt.Errorf("%w: %s: %q is not supported (http/protobuf or grpc)", errTracingConfig, name, protocol)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: OTLP exporter: %w", errTracingConfig, err)
	}
	return exp, protocol, nil
}

// serviceName is res's service.name.
func serviceName(res *resource.Resource) string {
	v, _ := res.Set().Value(semconv.ServiceNameKey)
	return v.AsString()
}

// envTracing starts tracing from the process's environment.
func envTracing(ctx context.Context, role, local string, logger *slog.Logger) (trace.TracerProvider, func(), error) {
	return startTracing(ctx, os.Getenv, role, local, logger)
}
