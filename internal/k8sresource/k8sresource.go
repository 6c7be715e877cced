// Package k8sresource finds the Kubernetes and container resource attributes
// of a process from /proc, without the API server: k8s.pod.name,
// k8s.namespace.name and container.id. Each is set only when it is really
// there: wrong attributes are worse than none.
package k8sresource

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/spans"
)

// EnvKeys are the variables of the target's environment Attrs needs.
var EnvKeys = []string{"HOSTNAME", "KUBERNETES_SERVICE_HOST"}

// namespaceFile is where Kubernetes mounts the pod's namespace (with the
// service-account token), inside the container.
const namespaceFile = "var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Attrs returns pid's attributes; env holds its EnvKeys.
func Attrs(pid int, env map[string]string) []spans.Attr {
	var attrs []spans.Attr
	if id := containerID(readFile(fmt.Sprintf("/proc/%d/cgroup", pid))); id != "" {
		attrs = append(attrs, spans.String("container.id", id))
	}
	ns := podNamespace(pid)
	if ns != "" {
		attrs = append(attrs, spans.String("k8s.namespace.name", ns))
	}
	// Kubernetes sets HOSTNAME to the pod's name; outside Kubernetes it
	// is anything (a container runtime sets it to the container id).
	if h := env["HOSTNAME"]; h != "" && (ns != "" || env["KUBERNETES_SERVICE_HOST"] != "") {
		attrs = append(attrs, spans.String("k8s.pod.name", h))
	}
	return attrs
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// podNamespace reads the namespace file through the process's own root,
// where its symlinks (/var/run -> /run) mean what they mean to it.
func podNamespace(pid int) string {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, namespaceFile, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), namespaceFile)
	defer f.Close()
	b := make([]byte, 254) // a namespace name is a DNS label: at most 63 bytes
	n, _ := f.Read(b)
	ns := strings.TrimSpace(string(b[:n]))
	if !validLabel(ns) {
		return ""
	}
	return ns
}

// validLabel tells whether s is an RFC 1123 DNS label, as namespaces are.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// containerID finds a container id in /proc/PID/cgroup: the 64 hex digits
// that container runtimes put in the cgroup path's last part that has them
// (".../docker-<id>.scope", ".../cri-containerd-<id>.scope",
// ".../crio-<id>.scope", "/kubepods/.../<id>").
func containerID(cgroup []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cgroup))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		comps := strings.Split(parts[2], "/")
		for i := len(comps) - 1; i >= 0; i-- {
			if id := hexRun(comps[i]); id != "" {
				return id
			}
		}
	}
	return ""
}

// hexRun returns the run of exactly 64 lower-case hex digits in s, if any.
func hexRun(s string) string {
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start == 64 {
			return s[start:i]
		}
		start = -1
	}
	return ""
}
