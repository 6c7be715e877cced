package k8sresource

import (
	"strings"
	"testing"
)

func TestContainerID(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct{ cgroup, want string }{
		{"0::/system.slice/docker-" + id + ".scope\n", id},
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-" + id + ".scope\n", id},
		{"0::/kubepods/burstable/pod0a1b/" + id + "\n", id},
		{"12:memory:/kubepods/besteffort/pod9/crio-" + id + "\n0::/\n", id},
		{"0::/user.slice/user-0.slice/session-1.scope\n", ""},
		{"4:memory:/process_api/b530de9fdd8d5d5a1b223fb53077db6e\n0::/\n", ""}, // 32 digits: not a container id
		{"0::/x/" + id + "0\n", ""},                                            // 65 digits
		{"0::/x/" + strings.ToUpper(id) + "\n", ""},
		{"garbage", ""},
	} {
		if got := containerID([]byte(tc.cgroup)); got != tc.want {
			t.Errorf("containerID(%q) = %q, want %q", tc.cgroup, got, tc.want)
		}
	}
}

func TestValidLabel(t *testing.T) {
	for s, want := range map[string]bool{
		"default": true, "kube-system": true, "a": true, "": false, "-x": false, "x-": false,
		"UPPER": false, "with.dot": false, strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
	} {
		if validLabel(s) != want {
			t.Errorf("validLabel(%q) != %v", s, want)
		}
	}
}

// TestAttrsOutsideKubernetes: a plain process gets none of the attributes,
// whatever its HOSTNAME.
func TestAttrsOutsideKubernetes(t *testing.T) {
	if got := Attrs(0, map[string]string{"HOSTNAME": "box"}); len(got) != 0 {
		t.Errorf("Attrs of a plain process: %v", got)
	}
}
