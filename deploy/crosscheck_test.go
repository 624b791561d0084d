package deploy_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gridmesh/gridmesh/internal/config"
	"github.com/gridmesh/gridmesh/internal/ops"
)

// namespace is the namespace the tests place the pods in.
const namespace = "default"

// podEnv is the environment of pod ordinal i of ss, with ip as its
// address: each variable resolved as the kubelet would (field
// references, ConfigMap and Secret keys).
func podEnv(t *testing.T, m *manifests, ss *appsv1.StatefulSet, i int, ip string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range ss.Spec.Template.Spec.Containers[0].Env {
		switch vf := e.ValueFrom; {
		case vf == nil:
			env[e.Name] = e.Value
		case vf.FieldRef != nil:
			v, ok := map[string]string{
				"metadata.name": fmt.Sprintf("%s-%d", ss.Name, i), "metadata.namespace": namespace, "status.podIP": ip,
			}[vf.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("%s: env %s: field %s not simulated", ss.Name, e.Name, vf.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case vf.ConfigMapKeyRef != nil:
			cm := m.configMaps[vf.ConfigMapKeyRef.Name]
			v, ok := "", false
			if cm != nil {
				v, ok = cm.Data[vf.ConfigMapKeyRef.Key]
			}
			if !ok {
				t.Fatalf("%s: env %s: no key %s in ConfigMap %s", ss.Name, e.Name, vf.ConfigMapKeyRef.Key, vf.ConfigMapKeyRef.Name)
			}
			env[e.Name] = v
		case vf.SecretKeyRef != nil:
			s := m.secrets[vf.SecretKeyRef.Name]
			if s == nil || secretData(s)[vf.SecretKeyRef.Key] == nil {
				t.Fatalf("%s: env %s: no key %s in Secret %s", ss.Name, e.Name, vf.SecretKeyRef.Key, vf.SecretKeyRef.Name)
			}
			env[e.Name] = string(secretData(s)[vf.SecretKeyRef.Key])
		default:
			t.Fatalf("%s: env %s: source not simulated", ss.Name, e.Name)
		}
	}
	return env
}

// podConfig returns the command (gateway or worker), the configuration
// file's path and its text, as pod ss mounts it.
func podConfig(t *testing.T, m *manifests, ss *appsv1.StatefulSet) (command, file, text string) {
	t.Helper()
	args := ss.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || (args[0] != "gateway" && args[0] != "worker") {
		t.Fatalf("%s: args %q: want gateway or worker first", ss.Name, args)
	}
	i := slices.Index(args, "-config")
	if i < 0 || i+1 == len(args) {
		t.Fatalf("%s: args %q: no -config", ss.Name, args)
	}
	v, key, ok := mountedPath(ss, args[i+1])
	if !ok || v.ConfigMap == nil {
		t.Fatalf("%s: -config %s is not in a mounted ConfigMap", ss.Name, args[i+1])
	}
	text, ok = m.configMaps[v.ConfigMap.Name].Data[key]
	if !ok {
		t.Fatalf("%s: ConfigMap %s has no %s", ss.Name, v.ConfigMap.Name, key)
	}
	return args[0], args[i+1], text
}

// podDNSNames are the DNS names of the pods of the StatefulSets, the
// gateway's first, as the grid's hosts must list them.
func podDNSNames(m *manifests) []string {
	var out []string
	for _, name := range []string{"gridmesh-gateway", "gridmesh-worker"} {
		ss := m.statefulSets[name]
		for i := range int(*ss.Spec.Replicas) {
			out = append(out, fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local", ss.Name, i, ss.Spec.ServiceName, namespace))
		}
	}
	return out
}

// nodeConfig is what the cross-check reads of a gateway's or a worker's
// configuration.
type nodeConfig struct {
	grid        config.Grid
	ops         config.Ops
	drain       string
	files       []string // files the configuration reads, by field
	fileFields  []string
	journalPath string
}

// decodeNode decodes a pod's configuration with its environment, as the
// command does.
func decodeNode(t *testing.T, command, text string, env map[string]string) nodeConfig {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var nc nodeConfig
	if command == "gateway" {
		c, err := config.DecodeGateway([]byte(text), lookup)
		if err != nil {
			t.Fatalf("the binary's loader refuses the gateway's configuration: %v", err)
		}
		nc = nodeConfig{grid: c.Grid, ops: c.Ops, drain: durationOr(c.DrainTimeout, "30s"), journalPath: c.JournalPath}
		nc.add("api_key_file", c.APIKeyFile)
		nc.add("tls_cert_path", c.TLSCertPath)
		nc.add("tls_client_cert_path", c.TLSClientCertPath)
		nc.add("tls_client_key_path", c.TLSClientKeyPath)
	} else {
		c, err := config.DecodeWorker([]byte(text), lookup)
		if err != nil {
			t.Fatalf("the binary's loader refuses the worker's configuration: %v", err)
		}
		nc = nodeConfig{grid: c.Grid, ops: c.Ops, drain: durationOr(c.DrainTimeout, "10s")}
	}
	nc.add("grid.secret_file", nc.grid.SecretFile)
	nc.add("ops_token_file", nc.ops.OpsTokenFile)
	if g := nc.grid.TLS; g != nil {
		nc.add("grid.tls.cert_file", g.CertFile)
		nc.add("grid.tls.key_file", g.KeyFile)
		nc.add("grid.tls.ca_file", g.CAFile)
	}
	return nc
}

func (nc *nodeConfig) add(field, file string) {
	if file != "" {
		nc.files, nc.fileFields = append(nc.files, file), append(nc.fileFields, field)
	}
}

func durationOr(d time.Duration, def string) string {
	if d == 0 {
		return def
	}
	return d.String()
}

// TestManifestsMatchBinary cross-checks the manifests with what the
// binary accepts and serves, for every pod: its arguments parse; its
// configuration loads with its environment (every ${VAR} defined, every
// key known); its hosts are exactly the StatefulSets' pods, itself among
// them; its ports are the container's; its probes ask the paths the
// operations port serves; every file the configuration reads is a key of
// a mounted Secret or ConfigMap, and the journal is on a volume; the
// grace period outlasts the drain; the pod runs as the image's user.
func TestManifestsMatchBinary(t *testing.T) {
	m := loadManifests(t)
	hosts := podDNSNames(m)
	for _, ss := range m.statefulSets {
		spec := ss.Spec.Template.Spec
		c := spec.Containers[0]
		command, _, text := podConfig(t, m, ss)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		out, err := exec.CommandContext(ctx, binary, append(slices.Clone(c.Args), "-h")...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s: the binary refuses the args %q: %v\n%s", ss.Name, c.Args, err, out)
		}
		checkProbes(t, ss.Name, c)
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != int64(imageUID) {
			t.Errorf("%s: pod securityContext %+v: want runAsNonRoot and the image's user %d", ss.Name, sc, imageUID)
		}
		for i := range int(*ss.Spec.Replicas) {
			ip := fmt.Sprintf("10.1.0.%d", i+1)
			nc := decodeNode(t, command, text, podEnv(t, m, ss, i, ip))
			got, err := config.ExpandHosts(nc.grid.Hosts)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]string, len(hosts))
			for j, h := range hosts {
				want[j] = "https://" + net.JoinHostPort(h, strconv.Itoa(int(port(c, "grid"))))
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s-%d: grid.hosts %q, want the pods %q", ss.Name, i, got, want)
			}
			if !slices.Contains(got, nc.grid.Local) || nc.grid.Local != want[slices.Index(hosts, fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local", ss.Name, i, ss.Spec.ServiceName, namespace))] {
				t.Errorf("%s-%d: grid.local %q is not the pod's own name", ss.Name, i, nc.grid.Local)
			}
			checkAddr(t, ss.Name+" grid.listen", nc.grid.Listen, ip, port(c, "grid"))
			checkAddr(t, ss.Name+" ops_listen", nc.ops.OpsListen, ip, port(c, "ops"))
			for j, f := range nc.files {
				v, key, ok := mountedPath(ss, f)
				switch {
				case !ok:
					t.Errorf("%s: %s %s is on no volume", ss.Name, nc.fileFields[j], f)
				case v.Secret != nil && secretData(m.secrets[v.Secret.SecretName])[key] == nil:
					t.Errorf("%s: %s %s: Secret %s has no key %s", ss.Name, nc.fileFields[j], f, v.Secret.SecretName, key)
				case v.ConfigMap != nil:
					t.Errorf("%s: %s %s is a secret in a ConfigMap", ss.Name, nc.fileFields[j], f)
				}
			}
			if nc.journalPath != "" {
				if v, _, ok := mountedPath(ss, nc.journalPath); !ok || v.Secret != nil || v.ConfigMap != nil {
					t.Errorf("%s: journal_path %s is not on a writable volume", ss.Name, nc.journalPath)
				}
			}
			drain, _ := time.ParseDuration(nc.drain)
			if grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; grace <= drain+5*time.Second {
				t.Errorf("%s: terminationGracePeriodSeconds %v does not outlast drain_timeout %v (with 5s to spare)", ss.Name, grace, drain)
			}
		}
	}
}

// checkProbes: readiness on /readyz, liveness on /healthz, both on the
// operations port.
func checkProbes(t *testing.T, name string, c corev1.Container) {
	t.Helper()
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, ops.ReadyPath}, {"liveness", c.LivenessProbe, ops.HealthPath}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.StrVal != "ops" {
			b, _ := yaml.Marshal(p.probe)
			t.Errorf("%s: %s probe %s: want GET %s on port ops", name, p.kind, b, p.path)
		}
	}
}

// checkAddr checks that addr, host:port, is ip:port.
func checkAddr(t *testing.T, what, addr, ip string, port int32) {
	t.Helper()
	if addr != net.JoinHostPort(ip, strconv.Itoa(int(port))) {
		t.Errorf("%s is %q, want the pod's %s:%d", what, addr, ip, port)
	}
}
