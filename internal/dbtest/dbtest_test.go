package dbtest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cli runs a client tool the way a person would check the login, and
// returns its trimmed output.
func cli(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestPostgres(t *testing.T) {
	s := RequirePostgres(t)
	want := Server{DSN: "postgres://tracewire:tracewire@127.0.0.1:5432/tracewire?sslmode=disable", Host: "127.0.0.1", Port: 5432}
	if s != want {
		t.Fatalf("Postgres() = %+v, want %+v", s, want)
	}
	if out := cli(t, "psql", "-X", "-w", "-t", "-A", s.DSN, "-c", "select 1"); out != "1" {
		t.Fatalf("select 1 printed %q", out)
	}
	// sqlapp creates its tables itself: the user must be allowed to.
	table := fmt.Sprintf("dbtest_probe_%d", os.Getpid())
	cli(t, "psql", "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", s.DSN,
		"-c", "CREATE TABLE "+table+" (id INT PRIMARY KEY, name VARCHAR(64))",
		"-c", "DROP TABLE "+table)
	again(t, "postgres", Postgres, ensurePostgres)
}

func TestMariaDB(t *testing.T) {
	s := RequireMariaDB(t)
	want := Server{DSN: "tracewire:tracewire@tcp(127.0.0.1:3306)/tracewire", Host: "127.0.0.1", Port: 3306}
	if s != want {
		t.Fatalf("MariaDB() = %+v, want %+v", s, want)
	}
	login := []string{"--no-defaults", "--protocol=TCP", "-h127.0.0.1", "-P3306", "-utracewire", "-ptracewire", "tracewire"}
	if out := cli(t, "mariadb", append(login, "-N", "-B", "-e", "select 1")...); out != "1" {
		t.Fatalf("select 1 printed %q", out)
	}
	table := fmt.Sprintf("dbtest_probe_%d", os.Getpid())
	cli(t, "mariadb", append(login, "-e", "CREATE TABLE "+table+" (id INT PRIMARY KEY, name VARCHAR(64)); DROP TABLE "+table)...)
	again(t, "mariadb", MariaDB, ensureMariaDB)
}

// again checks that later calls are cheap and that setting up a server that
// is already set up succeeds: several test processes do it.
func again(t *testing.T, name string, get func() (Server, error), setup func(time.Time) error) {
	t.Helper()
	start := time.Now()
	if _, err := get(); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("second call took %v: the setup ran again", d)
	}
	if os.Geteuid() != 0 {
		return
	}
	unlock, err := lock(name)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if err := setup(time.Now().Add(readyTimeout)); err != nil {
		t.Fatalf("setting up again: %v", err)
	}
}
