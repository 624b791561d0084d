package worker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrCommand: a contract's command cannot be run: not found, not a file,
// not executable, or a script whose interpreter is missing. ExecContract
// refuses such a command, so that a worker whose every transaction would
// fail does not start (a process pool's first start fails the same way).
var ErrCommand = errors.New("worker: contract command cannot be run")

// CheckCommand checks that argv[0] can be run from dir (the command's
// working directory; empty: the current one) with the worker's PATH:
// found, a regular file, executable, and, for a script, its #!
// interpreter too. It runs nothing.
func CheckCommand(argv []string, dir string) error {
	if len(argv) == 0 || argv[0] == "" {
		return fmt.Errorf("%w: no command", ErrCommand)
	}
	path, err := resolve(argv[0], dir)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrCommand, argv[0], err)
	}
	interp, err := interpreter(path)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrCommand, argv[0], err)
	}
	if interp == "" {
		return nil
	}
	if _, err := resolve(interp, ""); err != nil {
		return fmt.Errorf("%w: %q: its interpreter %s: %w", ErrCommand, argv[0], interp, err)
	}
	return nil
}

// resolve finds name as exec.Command would from dir and checks that it
// is an executable file.
func resolve(name, dir string) (string, error) {
	if !strings.Contains(name, "/") {
		return exec.LookPath(name) // checks the executable bits too
	}
	path := name
	if !filepath.IsAbs(path) && dir != "" {
		path = filepath.Join(dir, path)
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return "", err
	case !fi.Mode().IsRegular():
		return "", errors.New("not a regular file")
	case fi.Mode().Perm()&0o111 == 0:
		return "", errors.New("not executable (no x permission)")
	}
	return path, nil
}

// interpreter returns the interpreter a script names on its #! line, or
// "" for a file that has none.
func interpreter(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if !bytes.HasPrefix(head, []byte("#!")) {
		return "", nil
	}
	line, _, _ := bytes.Cut(head[2:], []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return "", errors.New("empty #! line")
	}
	return fields[0], nil
}
