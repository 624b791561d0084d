// Package testtrace records, for tests, the spans an OpenTelemetry
// TracerProvider makes (the SDK's tracetest.SpanRecorder), and finds and
// prints them: the trace of one transaction, span by span, with each
// span's parent, as the tests check it and log it.
//
// A Recorder may be used concurrently; its provider is shut down at the
// test's cleanup.
package testtrace
