package deploy_test

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd   string // upper case: FROM, RUN, ...
	args  string
	stage int // index of its FROM
}

type dockerfile struct{ ins []instruction }

// parseDockerfile reads the instructions of a Dockerfile: comments and
// blank lines dropped, backslash continuations joined.
func parseDockerfile(path string) (*dockerfile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	df := &dockerfile{}
	stage := -1
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if (cur.Len() == 0 && line == "") || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		full := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		if stage < 0 {
			return nil, fmt.Errorf("%s before the first FROM", cmd)
		}
		df.ins = append(df.ins, instruction{cmd: cmd, args: strings.TrimSpace(args), stage: stage})
	}
	return df, sc.Err()
}

// stages returns the number of stages.
func (d *dockerfile) stages() int { return d.ins[len(d.ins)-1].stage + 1 }

// of returns the instructions cmd of stage (-1: the last stage).
func (d *dockerfile) of(stage int, cmd string) []instruction {
	if stage < 0 {
		stage = d.stages() - 1
	}
	var out []instruction
	for _, in := range d.ins {
		if in.stage == stage && in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// goBuild returns the environment and the words of the RUN line that
// runs go build.
func (d *dockerfile) goBuild() (env, args []string, err error) {
	for _, in := range d.ins {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		words := shellWords(in.args)
		for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
			env = append(env, words[0])
			words = words[1:]
		}
		return env, words, nil
	}
	return nil, nil, fmt.Errorf("no RUN ... go build line")
}

// shellWords splits a simple shell command line: words separated by
// spaces, double and single quotes grouping.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// execForm decodes an exec-form (JSON array) ENTRYPOINT or CMD.
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Fatalf("%s %s is not in exec form (a JSON array): %v", in.cmd, in.args, err)
	}
	return v
}

// imageUser is the final stage's numeric USER, uid:gid.
const imageUID, imageGID uint32 = 65532, 65532

// TestDockerfile checks the image statically: two stages; the binary
// built static (CGO_ENABLED=0, and the build TestMain did with those
// flags yields a statically linked ELF), without build paths; a
// distroless (or scratch) base; a numeric non-root USER; the exec-form
// ENTRYPOINT being the file the final stage copies the binary to; and
// the ports the manifests use.
func TestDockerfile(t *testing.T) {
	df, err := parseDockerfile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if df.stages() < 2 {
		t.Fatalf("%d stage(s), want a multi-stage build", df.stages())
	}
	env, args, err := df.goBuild()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(env, " "), "CGO_ENABLED=0") || !contains(args, "-trimpath") {
		t.Errorf("go build line %v %v: want CGO_ENABLED=0 and -trimpath", env, args)
	}
	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary built as the Dockerfile says is dynamically linked (PT_INTERP)")
		}
	}
	from := df.of(-1, "FROM")[0].args
	if !strings.HasPrefix(from, "gcr.io/distroless/static") && from != "scratch" {
		t.Errorf("final stage FROM %s: want distroless static or scratch", from)
	}
	users := df.of(-1, "USER")
	if len(users) != 1 || users[0].args != fmt.Sprintf("%d:%d", imageUID, imageGID) {
		t.Errorf("final stage USER %v: want %d:%d (numeric, so runAsNonRoot can check it)", users, imageUID, imageGID)
	}
	entry := df.of(-1, "ENTRYPOINT")
	copies := df.of(-1, "COPY")
	if len(entry) != 1 || len(copies) != 1 {
		t.Fatalf("final stage: %d ENTRYPOINT and %d COPY, want one each", len(entry), len(copies))
	}
	ep := execForm(t, entry[0])
	cw := strings.Fields(copies[0].args)
	if !strings.HasPrefix(cw[0], "--from=") || cw[len(cw)-1] != ep[0] {
		t.Errorf("final stage copies %v but runs %v", cw, ep)
	}
	if imagePath != ep[0] {
		t.Errorf("the image's binary is %s; the tests place it at %s", ep[0], imagePath)
	}
	exposed := df.of(-1, "EXPOSE")
	if len(exposed) != 1 || exposed[0].args != "9000 9100" {
		t.Errorf("EXPOSE %v, want 9000 9100 (the grid and operations ports of the manifests)", exposed)
	}
	if cmd := df.of(-1, "CMD"); len(cmd) == 1 {
		args := execForm(t, cmd[0])
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Errorf("the image's default command %v fails: %v\n%s", args, err, out)
		}
	}
}

// imagePath is where the image holds the binary.
const imagePath = "/usr/local/bin/gridmesh"

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestImageRunsVersion builds an image with podman, offline, from the
// Dockerfile's final stage on scratch (the Dockerfile's own bases come
// from registries this machine cannot reach) holding the binary built as
// its build stage does, and runs `gridmesh version` in the image's
// filesystem as its USER. The image is run by chroot, not by a container
// runtime: crun cannot start a container in this sandbox (setrlimit is
// refused without CAP_SYS_RESOURCE). Skipped without podman or root.
func TestImageRunsVersion(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs podman and root (CI installs podman)")
	}
	df, err := parseDockerfile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := copyFile(binary, filepath.Join(dir, "gridmesh"), 0o755); err != nil {
		t.Fatal(err)
	}
	var cf strings.Builder
	cf.WriteString("FROM scratch\n")
	for _, in := range df.ins {
		switch {
		case in.stage != df.stages()-1 || in.cmd == "FROM":
		case in.cmd == "COPY":
			fmt.Fprintf(&cf, "COPY gridmesh %s\n", imagePath)
		default:
			fmt.Fprintf(&cf, "%s %s\n", in.cmd, in.args)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(cf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tag := fmt.Sprintf("localhost/gridmesh-deploy-test:%d", os.Getpid())
	podmanRun := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, podman, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	podmanRun("build", "--network=none", "--quiet", "-t", tag, dir)
	t.Cleanup(func() { _ = exec.Command(podman, "rmi", "-f", tag).Run() })
	root := podmanRun("image", "mount", tag)
	t.Cleanup(func() { _ = exec.Command(podman, "image", "unmount", tag).Run() })
	var cfg struct {
		User       string
		Entrypoint []string
	}
	if err := json.Unmarshal([]byte(podmanRun("image", "inspect", "--format", "{{json .Config}}", tag)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.User != fmt.Sprintf("%d:%d", imageUID, imageGID) || len(cfg.Entrypoint) != 1 {
		t.Fatalf("image config %+v", cfg)
	}
	cmd := exec.CommandContext(ctx, cfg.Entrypoint[0], "version")
	cmd.SysProcAttr = chrootAs(root, imageUID, imageGID)
	cmd.Dir = "/"
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil || !regexp.MustCompile(`^gridmesh \S+ \(revision .*\) go1\.\S+ linux/`).Match(out) {
		t.Fatalf("gridmesh version in the image: %v\n%s", err, out)
	}
	t.Logf("podman-built image, %s version: %s", imagePath, strings.TrimSpace(string(out)))
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}
