package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 90 * time.Second

// binary is gridmesh built as the Dockerfile builds it (its go build
// line's environment and flags), static: TestMain builds it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gridmesh-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gridmesh")
	if err := buildLikeDockerfile(binary); err != nil {
		fmt.Fprintln(os.Stderr, "build gridmesh as the Dockerfile does:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines outlived the tests:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildLikeDockerfile builds ../cmd/gridmesh to out with the environment
// and flags of the Dockerfile's go build line.
func buildLikeDockerfile(out string) error {
	df, err := parseDockerfile("Dockerfile")
	if err != nil {
		return err
	}
	env, args, err := df.goBuild()
	if err != nil {
		return err
	}
	for i, a := range args {
		if a == "-o" && i+1 < len(args) {
			args[i+1] = out
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args[1:]...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args[1:], " "), err, b)
	}
	return nil
}
