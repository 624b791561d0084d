package worker_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/gateway/worker"
)

// TestCheckCommand: a command that cannot be run is refused before any
// transaction, each way it can fail; one that can is not.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.sh", "#!/bin/sh\necho '{}'\n", 0o755)
	write("rel.sh", "#!/bin/sh\necho '{}'\n", 0o755)
	noExec := write("noexec.sh", "#!/bin/sh\n", 0o644)
	badInterp := write("badinterp.py", "#!/nonexistent/python3 -u\nprint('{}')\n", 0o755)
	for _, tc := range []struct {
		name string
		argv []string
		dir  string
		want string // "" if it must pass
	}{
		{"in PATH", []string{"sh", "-c", "true"}, "", ""},
		{"script", []string{good}, "", ""},
		{"relative to dir", []string{"./rel.sh"}, dir, ""},
		{"not in PATH", []string{"gridmesh-no-such-contract"}, "", "executable file not found"},
		{"missing path", []string{filepath.Join(dir, "missing")}, "", "no such file"},
		{"relative, missing from dir", []string{"./good.sh"}, t.TempDir(), "no such file"},
		{"a directory", []string{dir}, "", "not a regular file"},
		{"not executable", []string{noExec}, "", "not executable"},
		{"interpreter missing", []string{badInterp}, "", "its interpreter /nonexistent/python3"},
	} {
		err := worker.CheckCommand(tc.argv, tc.dir)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, worker.ErrCommand) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrCommand containing %q", tc.name, err, tc.want)
		}
		if _, err := worker.ExecContract(worker.ExecConfig{Command: tc.argv, Dir: tc.dir}); !errors.Is(err, worker.ErrCommand) {
			t.Errorf("%s: ExecContract: %v, want ErrCommand", tc.name, err)
		}
	}
}
