package testbrowser

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gridmesh/gridmesh/internal/testutil"
)

// Width and Height are the size of the browser's window and viewport.
const Width, Height = 1280, 900

// Start starts headless Chromium and returns the context of its first
// tab; it closes at the test's cleanup. Without Chromium (chromium,
// chromium-browser or google-chrome on the PATH) the test skips, unless
// GRIDMESH_REQUIRE_CHROMIUM=1; in -short mode it skips.
func Start(tb testing.TB) context.Context {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts Chromium")
	}
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("GRIDMESH_REQUIRE_CHROMIUM") == "1" {
			tb.Fatal("Chromium is not installed (GRIDMESH_REQUIRE_CHROMIUM=1): apt-get install chromium")
		}
		tb.Skip("Chromium is not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root, Chromium refuses to start sandboxed
		chromedp.WindowSize(Width, Height),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(func() { cancel(); acancel() })
	// The first action starts the browser, which lives as long as the
	// context it gets: not one with a timeout. Chromium's start is bounded
	// by chromedp's wait for its DevTools address (20 s).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(Width, Height)); err != nil {
		tb.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// Console collects the console messages and uncaught exceptions of the
// tab of ctx from now on; the func it returns stops and returns them.
func Console(tb testing.TB, ctx context.Context) func() []chromedp.ConsoleMessage {
	ctx, cancel := context.WithCancel(ctx)
	messages := chromedp.Console(ctx)
	var got []chromedp.ConsoleMessage
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			got = append(got, m)
		}
	}()
	stop := func() []chromedp.ConsoleMessage {
		cancel()
		<-done
		return got
	}
	tb.Cleanup(func() { stop() })
	return stop
}

// CheckConsole fails the test for an uncaught exception, a security
// message (such as a Content-Security-Policy violation) or an error whose
// text contains none of allowed.
func CheckConsole(tb testing.TB, msgs []chromedp.ConsoleMessage, allowed ...string) {
	tb.Helper()
next:
	for _, m := range msgs {
		if !m.IsException() && m.Source != "security" {
			if m.Type != chromedp.ConsoleError {
				continue
			}
			for _, a := range allowed {
				if strings.Contains(m.Text, a) {
					continue next
				}
			}
		}
		tb.Errorf("the page's console: %v (%s)", m, m.Source)
	}
}

// Do runs a browser action, failing the test with what on error.
func Do(tb testing.TB, ctx context.Context, what string, a chromedp.Action[chromedp.Void]) {
	tb.Helper()
	if err := chromedp.Do(ctx, a); err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// Eval evaluates a JavaScript expression in the page, failing the test
// on error.
func Eval[T any](tb testing.TB, ctx context.Context, expr string) T {
	tb.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// Wait waits until the page's JavaScript expression is true, within
// testutil.Timeout and ctx, failing the test with what and the page's
// text otherwise.
func Wait(tb testing.TB, ctx context.Context, what, expr string) {
	tb.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(testutil.Timeout)))
	if err != nil {
		last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		text, _ := chromedp.Run(last, chromedp.Evaluate[string]("document.body.innerText"))
		tb.Fatalf("waiting for %s: %v\nthe page:\n%s", what, err, text)
	}
}
