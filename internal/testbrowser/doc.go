// Package testbrowser starts headless Chromium for tests, through chromedp,
// and drives pages in it: actions and waits bounded by testutil.Timeout,
// the page's console collected. Start skips the test when Chromium is not
// installed, unless GRIDMESH_REQUIRE_CHROMIUM=1 (CI sets it).
//
// Everything it starts ends at the test's cleanup. A browser serves one
// test goroutine at a time.
package testbrowser
