package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifests are the objects of deploy/kubernetes, decoded strictly.
type manifests struct {
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	statefulSets map[string]*appsv1.StatefulSet
	pdbs         map[string]*policyv1.PodDisruptionBudget
}

// loadManifests decodes every document of the files kustomization.yaml
// lists, strictly: a field the API types do not have fails the test. The
// kustomization must list every YAML file of the directory.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	var kust struct {
		Resources []string `json:"resources"`
	}
	readStrict(t, "kubernetes/kustomization.yaml", &kust)
	files, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(kust.Resources, b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
	m := &manifests{
		services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, statefulSets: map[string]*appsv1.StatefulSet{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{},
	}
	for _, f := range kust.Resources {
		data, err := os.ReadFile(filepath.Join("kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			m.add(t, fmt.Sprintf("%s#%d", f, i), doc)
		}
	}
	return m
}

// add decodes one document into the type its apiVersion and kind name.
func (m *manifests) add(t *testing.T, where string, doc []byte) {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	var name string
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Service":
		o := new(corev1.Service)
		decodeStrict(t, where, doc, o)
		name, m.services[o.Name] = o.Name, o
	case "v1 ConfigMap":
		o := new(corev1.ConfigMap)
		decodeStrict(t, where, doc, o)
		name, m.configMaps[o.Name] = o.Name, o
	case "v1 Secret":
		o := new(corev1.Secret)
		decodeStrict(t, where, doc, o)
		name, m.secrets[o.Name] = o.Name, o
	case "apps/v1 StatefulSet":
		o := new(appsv1.StatefulSet)
		decodeStrict(t, where, doc, o)
		name, m.statefulSets[o.Name] = o.Name, o
	case "policy/v1 PodDisruptionBudget":
		o := new(policyv1.PodDisruptionBudget)
		decodeStrict(t, where, doc, o)
		name, m.pdbs[o.Name] = o.Name, o
	default:
		t.Fatalf("%s: unexpected %s %s", where, tm.APIVersion, tm.Kind)
	}
	if name == "" {
		t.Fatalf("%s: no metadata.name", where)
	}
}

func decodeStrict(t *testing.T, where string, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s does not decode strictly: %v", where, err)
	}
}

func readStrict(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	decodeStrict(t, path, data, v)
}

// secretData returns a Secret's data, stringData merged in as the API
// server does.
func secretData(s *corev1.Secret) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range s.Data {
		out[k] = v
	}
	for k, v := range s.StringData {
		out[k] = []byte(v)
	}
	return out
}

// TestManifestsDecode: every manifest decodes strictly, and the objects
// hang together: the StatefulSets run behind the headless Service, whose
// selector picks their pods; their container ports are the Service's
// target ports; the PodDisruptionBudget covers the workers; every volume
// names an object that exists, and every key it mounts is there.
func TestManifestsDecode(t *testing.T) {
	m := loadManifests(t)
	svc := m.services["gridmesh"]
	if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Fatalf("want a headless Service gridmesh publishing not-ready addresses: %+v", svc)
	}
	if len(m.statefulSets) != 2 {
		t.Fatalf("StatefulSets %v, want the gateway's and the workers'", keys(m.statefulSets))
	}
	for name, ss := range m.statefulSets {
		if ss.Spec.ServiceName != svc.Name {
			t.Errorf("%s: serviceName %q, want %q", name, ss.Spec.ServiceName, svc.Name)
		}
		sel, err := metav1.LabelSelectorAsSelector(ss.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(ss.Spec.Template.Labels)) ||
			!labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(ss.Spec.Template.Labels)) {
			t.Errorf("%s: its selector or the Service's does not match its pods' labels", name)
		}
		c := ss.Spec.Template.Spec.Containers[0]
		for _, sp := range svc.Spec.Ports {
			if port(c, sp.TargetPort.StrVal) != sp.Port {
				t.Errorf("%s: container port %q is not the Service's %d", name, sp.TargetPort.StrVal, sp.Port)
			}
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: no CPU or memory request", name)
		}
		checkVolumes(t, m, ss)
	}
	pdb := m.pdbs["gridmesh-worker"]
	workers := m.statefulSets["gridmesh-worker"]
	if pdb == nil || workers == nil {
		t.Fatal("no gridmesh-worker PodDisruptionBudget or StatefulSet")
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(workers.Spec.Template.Labels)) ||
		sel.Matches(labels.Set(m.statefulSets["gridmesh-gateway"].Spec.Template.Labels)) {
		t.Errorf("the PodDisruptionBudget does not select exactly the workers")
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() < 1 {
		t.Errorf("the PodDisruptionBudget lets no worker go: %+v", pdb.Spec)
	}
}

// port returns the number of the container's port called name.
func port(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return -1
}

// checkVolumes checks that each mount has its volume and each volume's
// object and keys exist.
func checkVolumes(t *testing.T, m *manifests, ss *appsv1.StatefulSet) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range ss.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, pvc := range ss.Spec.VolumeClaimTemplates {
		vols[pvc.Name] = corev1.Volume{Name: pvc.Name}
	}
	for _, vm := range ss.Spec.Template.Spec.Containers[0].VolumeMounts {
		v, ok := vols[vm.Name]
		switch {
		case !ok:
			t.Errorf("%s: mount %s has no volume", ss.Name, vm.Name)
		case v.ConfigMap != nil:
			cm := m.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("%s: no ConfigMap %s", ss.Name, v.ConfigMap.Name)
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("%s: ConfigMap %s has no key %s", ss.Name, cm.Name, it.Key)
				}
			}
		case v.Secret != nil:
			if m.secrets[v.Secret.SecretName] == nil {
				t.Errorf("%s: no Secret %s", ss.Name, v.Secret.SecretName)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// mountedPath maps a path in a container to the object key it shows: the
// volume mounted above it and the file name.
func mountedPath(ss *appsv1.StatefulSet, path string) (volume corev1.Volume, key string, ok bool) {
	for _, vm := range ss.Spec.Template.Spec.Containers[0].VolumeMounts {
		dir := strings.TrimSuffix(vm.MountPath, "/") + "/"
		if !strings.HasPrefix(path, dir) {
			continue
		}
		for _, v := range ss.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name {
				return v, strings.TrimPrefix(path, dir), true
			}
		}
		for _, pvc := range ss.Spec.VolumeClaimTemplates {
			if pvc.Name == vm.Name {
				return corev1.Volume{Name: pvc.Name}, strings.TrimPrefix(path, dir), true
			}
		}
	}
	return corev1.Volume{}, "", false
}
