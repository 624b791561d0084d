package main

import (
	"bytes"
	"context"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestCLIConventions: help goes to stdout and exits 0; a bad flag, a
// stray argument or an unknown command exits 2 with the reason on
// stderr; version and --version print the build.
func TestCLIConventions(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		code          int
		stdout, stder string // substrings; "" for empty
	}{
		{[]string{"-h"}, 0, "usage: gridmesh <command>", ""},
		{[]string{"--help"}, 0, "commands:", ""},
		{[]string{"help"}, 0, "version", ""},
		{[]string{}, 2, "", "usage: gridmesh <command>"},
		{[]string{"nonsense"}, 2, "", `unknown command "nonsense"`},
		{[]string{"gateway", "-h"}, 0, "-log-format", ""},
		{[]string{"worker", "--help"}, 0, "-drain-timeout", ""},
		{[]string{"primesim", "-h"}, 0, "-tls-client-ca", ""},
		{[]string{"status", "-h"}, 0, "-cacert", ""},
		{[]string{"gateway", "-bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"worker", "-drain-timeout", "soon"}, 2, "", "invalid value"},
		{[]string{"gateway", "-config", "x.yaml", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"demo", "stray"}, 2, "", `unexpected argument "stray"`},
		{[]string{"status"}, 2, "", "no node URL given"},
		{[]string{"gateway", "-log-format", "xml"}, 2, "", `-log-format "xml"`},
		{[]string{"worker", "-log-level", "loud"}, 2, "", `-log-level "loud"`},
		{[]string{"primesim", "-tls-key", "k.pem"}, 2, "", "-tls-cert and -tls-key go together"},
		{[]string{"version", "x"}, 2, "", `unexpected argument "x"`},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		bad := code != tc.code ||
			(tc.stdout == "") != (out.Len() == 0) || !strings.Contains(out.String(), tc.stdout) ||
			(tc.stder == "") != (errOut.Len() == 0) || !strings.Contains(errOut.String(), tc.stder)
		if bad {
			t.Errorf("gridmesh %q: exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)",
				tc.args, code, tc.code, out.String(), tc.stdout, errOut.String(), tc.stder)
		}
	}
}

// TestVersion: `gridmesh version` and --version print one line with the
// module version, the revision and the Go version.
func TestVersion(t *testing.T) {
	line := regexp.MustCompile(`^gridmesh \S+ \(revision \S+?(, modified)?, \S+\) go\S+ ` + runtime.GOOS + "/" + runtime.GOARCH + "\n$")
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 0 || !line.MatchString(out.String()) || errOut.Len() != 0 {
			t.Errorf("gridmesh %v: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
}
