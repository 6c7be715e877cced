package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

func loadDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	raw, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	// Strict: a misspelt or misplaced field fails here instead of being
	// silently dropped by the API server.
	if err := yaml.UnmarshalStrict(raw, &ds); err != nil {
		t.Fatalf("daemonset.yaml: %v", err)
	}
	// yaml.UnmarshalStrict matches field names case-insensitively ("hostPid"
	// passes); the API server does not, so check again as it decodes.
	asJSON, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		t.Fatal(err)
	}
	var again appsv1.DaemonSet
	strict, err := kjson.UnmarshalStrict(asJSON, &again, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil || len(strict) > 0 {
		t.Fatalf("daemonset.yaml as the API server reads it: %v %v", err, strict)
	}
	return &ds
}

func agentContainer(t *testing.T, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	return cs[0]
}

func TestDaemonSetShape(t *testing.T) {
	ds := loadDaemonSet(t)
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Fatalf("%s/%s", ds.APIVersion, ds.Kind)
	}
	if ds.Spec.Selector == nil || len(ds.Spec.Selector.MatchLabels) == 0 {
		t.Fatal("no selector labels")
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Fatalf("selector %s=%s does not match the pod labels %v", k, v, ds.Spec.Template.Labels)
		}
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID must be true to see the node's processes")
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Error("no toleration for every taint")
	}
	if c := agentContainer(t, ds); c.Image != "ghcr.io/tracewire/tracewire:latest" {
		t.Errorf("image %q", c.Image)
	}
}

func TestDaemonSetSecurity(t *testing.T) {
	ds := loadDaemonSet(t)
	sc := agentContainer(t, ds).SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: capabilities must be enough")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("root filesystem must be read-only")
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drop = %v, want [ALL]", sc.Capabilities.Drop)
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	// What cmd/agent/caps.go checks; e2e/privilege_test.go proves it enough.
	want := []corev1.Capability{"BPF", "DAC_READ_SEARCH", "NET_ADMIN", "PERFMON", "SYS_PTRACE"}
	if !slices.Equal(add, want) {
		t.Errorf("add = %v, want %v", add, want)
	}
}

func TestDaemonSetHostMounts(t *testing.T) {
	ds := loadDaemonSet(t)
	hostPaths := make(map[string]string) // volume name -> host path
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := make(map[string]bool) // host path, mounted read-only at the same place
	for _, m := range agentContainer(t, ds).VolumeMounts {
		hp, ok := hostPaths[m.Name]
		if !ok {
			t.Errorf("mount %s uses no hostPath volume", m.Name)
			continue
		}
		if !m.ReadOnly {
			t.Errorf("%s is mounted writable", hp)
		}
		if m.MountPath != hp {
			t.Errorf("%s is mounted at %s", hp, m.MountPath)
		}
		mounted[hp] = true
	}
	for _, p := range []string{"/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/bpf", "/sys/fs/cgroup", "/sys/kernel/btf"} {
		if !mounted[p] {
			t.Errorf("%s not mounted", p)
		}
	}
}

func TestDaemonSetEnvAndResources(t *testing.T) {
	ds := loadDaemonSet(t)
	c := agentContainer(t, ds)
	defined := make(map[string]corev1.EnvVar)
	for _, e := range c.Env {
		// $(VAR) expands only variables defined earlier in the list.
		rest := e.Value
		for name := range defined {
			rest = strings.ReplaceAll(rest, "$("+name+")", "")
		}
		if strings.Contains(rest, "$(") {
			t.Errorf("%s refers to a variable not defined before it: %q", e.Name, e.Value)
		}
		defined[e.Name] = e
	}
	for _, name := range []string{"TRACEWIRE_TARGETS", "OTEL_EXPORTER_OTLP_ENDPOINT", "NODE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		if _, ok := defined[name]; !ok {
			t.Errorf("env %s missing", name)
		}
	}
	if ref := defined["NODE_NAME"].ValueFrom; ref == nil || ref.FieldRef == nil || ref.FieldRef.FieldPath != "spec.nodeName" {
		t.Error("NODE_NAME must come from spec.nodeName")
	}
	for _, attr := range []string{"k8s.node.name=$(NODE_NAME)", "host.name=$(NODE_NAME)"} {
		if !strings.Contains(defined["OTEL_RESOURCE_ATTRIBUTES"].Value, attr) {
			t.Errorf("OTEL_RESOURCE_ATTRIBUTES lacks %s", attr)
		}
	}

	r := c.Resources
	for _, q := range []struct {
		name      string
		got, want string
	}{
		{"cpu request", r.Requests.Cpu().String(), "50m"},
		{"cpu limit", r.Limits.Cpu().String(), "500m"},
		{"memory request", r.Requests.Memory().String(), "64Mi"},
		{"memory limit", r.Limits.Memory().String(), "256Mi"},
	} {
		if q.got != q.want {
			t.Errorf("%s = %s, want %s", q.name, q.got, q.want)
		}
	}
}
