package dbtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	mariadbRunDir  = "/run/mysqld"
	mariadbDataDir = "/var/lib/mysql"
)

// mariadbSetup is idempotent. The user exists for 127.0.0.1 and for
// localhost because the server may resolve 127.0.0.1 to localhost, where an
// anonymous user would otherwise take precedence.
const mariadbSetup = `
CREATE DATABASE IF NOT EXISTS tracewire;
CREATE USER IF NOT EXISTS 'tracewire'@'127.0.0.1' IDENTIFIED BY 'tracewire';
CREATE USER IF NOT EXISTS 'tracewire'@'localhost' IDENTIFIED BY 'tracewire';
ALTER USER 'tracewire'@'127.0.0.1' IDENTIFIED BY 'tracewire';
ALTER USER 'tracewire'@'localhost' IDENTIFIED BY 'tracewire';
GRANT ALL PRIVILEGES ON tracewire.* TO 'tracewire'@'127.0.0.1';
GRANT ALL PRIVILEGES ON tracewire.* TO 'tracewire'@'localhost';
`

func ensureMariaDB(deadline time.Time) error {
	t, err := tools("mariadb", "mariadbd", "mariadb-install-db")
	if err != nil {
		return err
	}
	logFile := filepath.Join(os.TempDir(), "tracewire-mariadbd.log")
	var exited <-chan error
	// A live server without the port yet is starting up: wait for it below.
	if !listening(mariadbPort) && !mariadbAlive() {
		if exited, err = startMariaDB(t, logFile); err != nil {
			return err
		}
	}
	// unix_socket authentication: the root OS user is the server's root.
	root := func(stdin string, args ...string) command {
		return command{name: t["mariadb"], args: append([]string{"-uroot", "--connect-timeout=5"}, args...), stdin: stdin}
	}
	ready := func() error {
		if !listening(mariadbPort) {
			return fmt.Errorf("nothing listens on %s:%d", Host, mariadbPort)
		}
		_, err := run(root("", "-e", "SELECT 1"))
		return err
	}
	died := func() error {
		select {
		case err := <-exited:
			return fmt.Errorf("mariadbd exited (%v)\n%s", err, tail(logFile, 20))
		default:
			return nil
		}
	}
	if err := waitFor(deadline, "mariadb", ready, died); err != nil {
		return err
	}
	_, err = run(root(mariadbSetup))
	return err
}

// startMariaDB starts mariadbd detached from this process, which may exit
// long before the server. The channel reports the server's exit while this
// process lives.
func startMariaDB(t map[string]string, logFile string) (<-chan error, error) {
	mysql, err := user.Lookup("mysql")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	uid, _ := strconv.Atoi(mysql.Uid)
	gid, _ := strconv.Atoi(mysql.Gid)
	// /run is a tmpfs: the socket directory is gone after a reboot.
	if err := os.MkdirAll(mariadbRunDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(mariadbRunDir, uid, gid); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(mariadbDataDir, "mysql")); os.IsNotExist(err) {
		if _, err := run(command{name: t["mariadb-install-db"], args: []string{"--user=mysql"}}); err != nil {
			return nil, err
		}
	}

	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the server holds its own copy
	cmd := exec.Command(t["mariadbd"], "--user=mysql")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return exited, nil
}

// mariadbAlive reports whether the pid file names a running server.
func mariadbAlive() bool {
	b, err := os.ReadFile(filepath.Join(mariadbRunDir, "mysqld.pid"))
	if err != nil {
		return false
	}
	comm, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/comm")
	if err != nil {
		return false
	}
	c := strings.TrimSpace(string(comm))
	return c == "mariadbd" || c == "mysqld"
}

// loginMariaDB checks that the tracewire user logs in over TCP with its password.
func loginMariaDB(s Server) error {
	mariadb, err := tool("mariadb")
	if err != nil {
		return err
	}
	_, err = run(command{
		name: mariadb,
		// --no-defaults: an option file of the caller must not change the login.
		args: []string{"--no-defaults", "--protocol=TCP", "-h" + s.Host, "-P" + strconv.Itoa(s.Port),
			"-u" + Name, "-p" + Name, "--connect-timeout=5", Name, "-e", "SELECT 1"},
	})
	return err
}
