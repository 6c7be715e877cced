package dbtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// cmdTimeout bounds one command; cluster creation is the slowest.
const cmdTimeout = 2 * time.Minute

// command describes one run of a command-line tool.
type command struct {
	name  string
	args  []string
	stdin string   // fed to the command when not empty
	env   []string // added to this process's environment
}

// run runs c and returns its combined output. The output goes through a file,
// not a pipe: a daemon that a command leaves behind would keep a pipe open
// and block the wait.
func run(c command) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := os.CreateTemp("", "tracewire-dbtest-*.out")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()

	cmd := exec.CommandContext(ctx, c.name, c.args...)
	cmd.Stdout, cmd.Stderr = out, out
	if c.stdin != "" {
		cmd.Stdin = strings.NewReader(c.stdin)
	}
	cmd.Dir = "/" // runuser keeps the directory, which another user may not read
	cmd.Env = append(os.Environ(), c.env...)
	runErr := cmd.Run()
	b, _ := os.ReadFile(out.Name())
	text := strings.TrimSpace(string(b))
	if runErr != nil {
		return text, fmt.Errorf("%s %s: %v: %s", c.name, strings.Join(c.args, " "), runErr, text)
	}
	return text, nil
}

// tool finds an executable in PATH or, for daemons and admin tools that a
// non-login PATH may lack, in the system directories.
func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s is not installed", ErrUnavailable, name)
}

// tools resolves several executables at once.
func tools(names ...string) (map[string]string, error) {
	m := make(map[string]string, len(names))
	for _, n := range names {
		p, err := tool(n)
		if err != nil {
			return nil, err
		}
		m[n] = p
	}
	return m, nil
}
