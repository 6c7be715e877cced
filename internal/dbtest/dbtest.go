// Package dbtest gives the end-to-end tests a running PostgreSQL and MariaDB
// with a database "tracewire" that the user "tracewire" (password
// "tracewire") owns and reaches over TCP on 127.0.0.1.
//
// It drives the servers with their command-line tools only, so that no test
// binary links a database driver. Servers it starts are left running: they are
// shared by every test process on the machine. Starting and provisioning need
// root (Debian 12 packages postgresql and mariadb-server).
package dbtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a database server ready for the tracewire user.
type Server struct {
	DSN  string // for the Go driver: pgx URL, or go-sql-driver/mysql format
	Host string
	Port int
}

const (
	// Host is where both servers are reached.
	Host = "127.0.0.1"
	// Name is the database, the user and the user's password.
	Name = "tracewire"

	postgresPort = 5432
	mariadbPort  = 3306
	// How long a server may take to accept the tracewire user.
	readyTimeout = 60 * time.Second
)

// ErrUnavailable is wrapped by the errors of a machine that cannot provide a
// server at all: not root, or the packages are not installed.
var ErrUnavailable = errors.New("database server unavailable")

var (
	postgresOnce = sync.OnceValues(func() (Server, error) {
		return ensure("postgres", postgresServer(), ensurePostgres, loginPostgres)
	})
	mariadbOnce = sync.OnceValues(func() (Server, error) {
		return ensure("mariadb", mariadbServer(), ensureMariaDB, loginMariaDB)
	})
)

// Postgres makes sure PostgreSQL is running on 127.0.0.1:5432 and ready for
// the tracewire user. Only the first call of a process does the work.
func Postgres() (Server, error) { return postgresOnce() }

// MariaDB makes sure MariaDB is running on 127.0.0.1:3306 and ready for the
// tracewire user. Only the first call of a process does the work.
func MariaDB() (Server, error) { return mariadbOnce() }

// RequirePostgres returns Postgres() or ends the test: it skips when the
// machine cannot provide the server, except under CI=true where it fails.
func RequirePostgres(t testing.TB) Server {
	t.Helper()
	return require(t, Postgres)
}

// RequireMariaDB returns MariaDB() or ends the test like RequirePostgres.
func RequireMariaDB(t testing.TB) Server {
	t.Helper()
	return require(t, MariaDB)
}

func require(t testing.TB, get func() (Server, error)) Server {
	t.Helper()
	s, err := get()
	if err == nil {
		return s
	}
	if errors.Is(err, ErrUnavailable) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	t.Fatal(err)
	return Server{}
}

func postgresServer() Server {
	return Server{
		DSN:  fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", Name, Name, Host, postgresPort, Name),
		Host: Host,
		Port: postgresPort,
	}
}

func mariadbServer() Server {
	return Server{
		DSN:  fmt.Sprintf("%s:%s@tcp(%s:%d)/%s", Name, Name, Host, mariadbPort, Name),
		Host: Host,
		Port: mariadbPort,
	}
}

// ensure runs setup under a machine-wide lock, because test binaries of
// several packages run at once and must not start a server twice. Without
// root it accepts a server that someone already prepared.
func ensure(name string, s Server, setup func(deadline time.Time) error, login func(Server) error) (Server, error) {
	if os.Geteuid() != 0 {
		if err := login(s); err != nil {
			return Server{}, fmt.Errorf("dbtest: %s: %w: not root (uid %d) and the tracewire login fails: %v", name, ErrUnavailable, os.Geteuid(), err)
		}
		return s, nil
	}
	unlock, err := lock(name)
	if err != nil {
		return Server{}, fmt.Errorf("dbtest: %s: %v", name, err)
	}
	defer unlock()
	if err := setup(time.Now().Add(readyTimeout)); err != nil {
		return Server{}, fmt.Errorf("dbtest: %s: %w", name, err)
	}
	if err := login(s); err != nil {
		return Server{}, fmt.Errorf("dbtest: %s: tracewire cannot log in over TCP: %v", name, err)
	}
	return s, nil
}

// lock takes an exclusive flock that the kernel drops if the process dies.
func lock(name string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "tracewire-dbtest-"+name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %v", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// listening reports whether something accepts TCP connections on Host:port.
func listening(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(Host, strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitFor retries check until it succeeds, stop reports a reason to give up,
// or the deadline passes.
func waitFor(deadline time.Time, what string, check func() error, stop func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		if stop != nil {
			if serr := stop(); serr != nil {
				return fmt.Errorf("waiting for %s: %v (last error: %v)", what, serr, err)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v", what, readyTimeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// tail returns the last lines of a log file, for error messages.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return path + ":\n" + strings.Join(l, "\n")
}
