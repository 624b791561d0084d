package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testcerts"
)

// pod is one pod of a StatefulSet run as a process: the image's layout
// in a directory it is chrooted to, as the image's user, with the
// container's arguments and environment and the volumes' files where the
// manifests mount them.
type pod struct {
	name, ip string
	root     string
	cmd      *exec.Cmd
	out      *lockedBuffer
	done     chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// operatorValues fills in what the manifests leave to the operator
// (their placeholders), and nothing else: Prime's address, chain and
// contract, its CA; the secrets; the grid's certificate.
func operatorValues(t *testing.T, m *manifests, primeAddr string, ca *testcerts.CA) {
	t.Helper()
	cm := m.configMaps["gridmesh"]
	for k, v := range map[string]string{
		"prime-address": primeAddr, "chain-id": "c", "smart-contract-id": "sc",
		"prime-tls-ca-file": "/etc/gridmesh/secret/prime-ca.crt",
	} {
		if _, ok := cm.Data[k]; !ok {
			t.Fatalf("ConfigMap gridmesh has no %s to fill in", k)
		}
		cm.Data[k] = v
	}
	certPEM, keyPEM := ca.Issue(t, "gridmesh", fmt.Sprintf("*.gridmesh.%s.svc.cluster.local", namespace))
	for name, values := range map[string]map[string]string{
		"gridmesh":     {"grid-secret": "grid-secret-k8s", "api-key": "k", "ops-token": "ops-token-k8s", "prime-ca.crt": string(ca.PEM)},
		"gridmesh-tls": {"tls.crt": string(certPEM), "tls.key": string(keyPEM), "ca.crt": string(ca.PEM)},
	} {
		s := m.secrets[name]
		for k, v := range values {
			if _, ok := secretData(s)[k]; !ok {
				t.Fatalf("Secret %s has no %s to fill in", name, k)
			}
			s.StringData[k] = v
		}
	}
}

// startPod lays out pod ordinal i of ss and starts it.
func startPod(t *testing.T, ctx context.Context, m *manifests, ss *appsv1.StatefulSet, i int, ip, hosts string) *pod {
	t.Helper()
	p := &pod{name: fmt.Sprintf("%s-%d", ss.Name, i), ip: ip, root: t.TempDir(), out: new(lockedBuffer), done: make(chan error, 1)}
	spec := ss.Spec.Template.Spec
	gid := uint32(*spec.SecurityContext.FSGroup)
	write := func(path string, data []byte, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(p.root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(full, 0, int(gid)); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	write(imagePath, bin, 0o755)
	write("/etc/hosts", []byte(hosts), 0o644)
	// What a container runtime provides: /dev/null.
	if err := os.MkdirAll(filepath.Join(p.root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(p.root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	c := spec.Containers[0]
	for _, vm := range c.VolumeMounts {
		v, _, _ := mountedPath(ss, vm.MountPath+"/x")
		switch {
		case v.ConfigMap != nil:
			cm := m.configMaps[v.ConfigMap.Name]
			for _, it := range v.ConfigMap.Items {
				write(filepath.Join(vm.MountPath, it.Path), []byte(cm.Data[it.Key]), 0o644)
			}
		case v.Secret != nil:
			mode := os.FileMode(0o644)
			if v.Secret.DefaultMode != nil {
				mode = os.FileMode(*v.Secret.DefaultMode)
			}
			for k, data := range secretData(m.secrets[v.Secret.SecretName]) {
				write(filepath.Join(vm.MountPath, k), data, mode)
			}
		default: // a volume claim: an empty directory the fsGroup may write
			dir := filepath.Join(p.root, vm.MountPath)
			if err := os.MkdirAll(dir, 0o775); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, 0, int(gid)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o2775|os.ModeSetgid); err != nil { // MkdirAll's mode passed the umask
				t.Fatal(err)
			}
		}
	}
	var env []string
	for k, v := range podEnv(t, m, ss, i, ip) {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	p.cmd = exec.CommandContext(ctx, imagePath, c.Args...)
	p.cmd.SysProcAttr = chrootAs(p.root, uint32(*spec.SecurityContext.RunAsUser), gid)
	p.cmd.Dir, p.cmd.Env = "/", env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) // its contract processes too
		<-p.done
	})
	return p
}

// stop sends the pod SIGTERM, as the kubelet does, and waits for it to
// exit within the grace period.
func (p *pod) stop(t *testing.T, grace time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM:\n%s", p.name, err, p.out.String())
		}
	case <-time.After(grace):
		t.Errorf("%s still runs after its grace period %v:\n%s", p.name, grace, p.out.String())
	}
}

// TestPodsAnswerALoad runs the gateway and the workers with exactly the
// manifests' arguments, environment, files and user, each on a loopback
// address of its own that its peers reach through the DNS names of the
// headless Service (an /etc/hosts in each pod's root), against a Prime
// simulator serving mutual TLS; only the operator's placeholders are
// filled in. Every transaction of the load is answered exactly once, the
// pods are ready, and SIGTERM stops them cleanly within their grace
// periods. Needs root (chroot, the image's user).
func TestPodsAnswerALoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: each pod runs in a chroot as the image's user")
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	const n = 300
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	m := loadManifests(t)
	net := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))
	primeIP := net + "250"
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "gridmesh deploy test CA")
	primeCerts := ca.WriteFiles(t, dir, "prime", primeIP)
	primeAddr := primeIP + ":50051"
	operatorValues(t, m, primeAddr, ca)

	// Each pod's address, and the hosts file that gives every pod its
	// Service DNS name.
	type podRef struct {
		ss *appsv1.StatefulSet
		i  int
		ip string
	}
	var refs []podRef
	var hosts strings.Builder
	for _, name := range []string{"gridmesh-worker", "gridmesh-gateway"} {
		ss := m.statefulSets[name]
		for i := range int(*ss.Spec.Replicas) {
			ip := fmt.Sprintf("%s%d", net, len(refs)+1)
			refs = append(refs, podRef{ss, i, ip})
			fmt.Fprintf(&hosts, "%s %s-%d.%s.%s.svc.cluster.local\n", ip, ss.Name, i, ss.Spec.ServiceName, namespace)
		}
	}
	prime := exec.CommandContext(ctx, binary, "primesim", "-listen", primeAddr, "-api-key", "k", "-contracts", "sc", "-chain-id", "c",
		"-count", fmt.Sprint(n), "-rate", "100", "-wait", "80s", "-tls-cert", primeCerts.Cert, "-tls-key", primeCerts.Key, "-tls-client-ca", primeCerts.CA,
		"-tls-client-auth", "request")
	primeOut := new(lockedBuffer)
	prime.Stdout, prime.Stderr = primeOut, primeOut
	if err := prime.Start(); err != nil {
		t.Fatal(err)
	}
	primeDone := make(chan error, 1)
	go func() { primeDone <- prime.Wait() }()
	t.Cleanup(func() { _ = prime.Process.Kill(); <-primeDone })

	var pods []*pod
	for _, r := range refs {
		pods = append(pods, startPod(t, ctx, m, r.ss, r.i, r.ip, hosts.String()))
	}
	logs := func() string {
		var b strings.Builder
		for _, p := range pods {
			fmt.Fprintf(&b, "--- %s:\n%s\n", p.name, p.out.String())
		}
		return b.String() + "--- primesim:\n" + primeOut.String()
	}
	// While the load runs (3 s at 100 transactions a second), every pod
	// becomes ready.
	ready := waitReady(t, ctx, pods, primeDone)
	exited := make(chan string, len(pods))
	for _, p := range pods {
		go func() { // ends when the pod does, at the latest at cleanup
			err := <-p.done
			p.done <- err
			exited <- fmt.Sprintf("%s exited: %v", p.name, err)
		}()
	}
	select {
	case err := <-primeDone:
		primeDone <- err
		if err != nil {
			t.Fatalf("primesim: %v (not every transaction answered exactly once?)\n%s", err, logs())
		}
	case why := <-exited:
		t.Fatalf("%s before the load was answered\n%s", why, logs())
	case <-ctx.Done():
		t.Fatalf("the load was not answered in time\n%s", logs())
	}
	t.Logf("primesim's report:\n%s", primeOut.String())
	if !ready {
		t.Errorf("the pods were not all ready while the load ran\n%s", logs())
	}
	for i, p := range pods {
		p.stop(t, time.Duration(*refs[i].ss.Spec.Template.Spec.TerminationGracePeriodSeconds)*time.Second)
	}
	if strings.Contains(logs(), `"level":"ERROR"`) || strings.Contains(logs(), "contract failed") {
		t.Errorf("errors in the logs:\n%s", logs())
	}
}

// waitReady polls every pod's /readyz until all answer 200, or primesim
// ends, or ctx does; it reports whether all were ready.
func waitReady(t *testing.T, ctx context.Context, pods []*pod, primeDone chan error) bool {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	isReady := func(p *pod) bool {
		resp, err := client.Get("http://" + p.ip + ":9100" + ops.ReadyPath)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for {
		all := true
		for _, p := range pods {
			all = all && isReady(p)
		}
		if all {
			return true
		}
		select {
		case err := <-primeDone:
			primeDone <- err
			return false
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}
