package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestKubernetesResource: a target that runs as a Kubernetes pod would (its
// own mount namespace with the service-account namespace file, a container
// runtime's cgroup, HOSTNAME = pod name, KUBERNETES_SERVICE_HOST) gets
// k8s.pod.name, k8s.namespace.name and container.id, and k8s.node.name from
// the agent's environment as the DaemonSet sets it; a plain process with a
// HOSTNAME gets none of them.
func TestKubernetesResource(t *testing.T) {
	requireEBPF(t)
	pod := copyExe(t, "hello-go126", "podapp")
	plain := copyExe(t, "hello-go126", "plainapp")
	id := strings.Repeat("0123456789abcdef", 4)
	cg := filepath.Join(cgroup2Mount(t), fmt.Sprintf("tracewire-e2e-%d", os.Getpid()), "cri-containerd-"+id+".scope")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg); os.Remove(filepath.Dir(cg)) })

	recv := otlptest.Start(t)
	startAgent(t, recv, []string{"podapp", "plainapp"}, "OTEL_RESOURCE_ATTRIBUTES=k8s.node.name=node-1")

	a := &app{name: "podapp", port: freePort(t)}
	script := fmt.Sprintf(`echo $$ > %s/cgroup.procs &&
mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount &&
echo shop > /run/secrets/kubernetes.io/serviceaccount/namespace &&
exec %s -addr 127.0.0.1:%d`, cg, pod, a.port)
	a.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	a.cmd.Env = append(os.Environ(), "GODEBUG=httpmuxgo121=0", "HOSTNAME=checkout-7d9f-abcde", "KUBERNETES_SERVICE_HOST=10.96.0.1")
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	waitListening(t, a.port)
	p := startExe(t, plain, "HOSTNAME=workstation")

	for _, c := range []struct {
		a    *app
		want map[string]any
	}{
		{a, map[string]any{"k8s.pod.name": "checkout-7d9f-abcde", "k8s.namespace.name": "shop", "container.id": id, "k8s.node.name": "node-1"}},
		{p, map[string]any{"k8s.pod.name": nil, "k8s.namespace.name": nil, "container.id": nil, "k8s.node.name": "node-1"}},
	} {
		waitTraced(t, recv, c.a)
		get(t, c.a.url("/users/k8s"))
		g := recv.WaitSpans(t, 10*time.Second, spanWithPath(c.a, "/users/k8s"), 1)[0]
		for k, v := range c.want {
			if got, ok := g.Resource[k]; v == nil && ok || v != nil && got != v {
				t.Errorf("%s: resource %s = %v, want %v", c.a.name, k, got, v)
			}
		}
	}
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 2 && fs[2] == "cgroup2" {
			return fs[1]
		}
	}
	t.Fatal("no cgroup v2 hierarchy")
	return ""
}
