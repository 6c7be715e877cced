package dbtest

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// postgresSetup is idempotent: it creates what is missing and resets the
// password and ownership of what exists. CREATE DATABASE cannot run inside
// a DO block, hence \gexec.
const postgresSetup = `
SELECT 'CREATE ROLE tracewire' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tracewire')\gexec
ALTER ROLE tracewire LOGIN PASSWORD 'tracewire';
SELECT 'CREATE DATABASE tracewire OWNER tracewire' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'tracewire')\gexec
ALTER DATABASE tracewire OWNER TO tracewire;
GRANT ALL PRIVILEGES ON DATABASE tracewire TO tracewire;
`

// cluster is one line of pg_lsclusters.
type cluster struct {
	version, name, port, status, log string
}

func ensurePostgres(deadline time.Time) error {
	t, err := tools("pg_lsclusters", "pg_ctlcluster", "pg_createcluster", "runuser", "psql")
	if err != nil {
		return err
	}
	logFile := ""
	if !listening(postgresPort) {
		c, err := postgresCluster(t)
		if err != nil {
			return err
		}
		logFile = c.log
		// An online cluster is only starting up: wait for it below.
		if !strings.HasPrefix(c.status, "online") {
			if _, err := run(command{name: t["pg_ctlcluster"], args: []string{"--skip-systemctl-redirect", c.version, c.name, "start"}}); err != nil {
				return fmt.Errorf("%v\n%s", err, tail(c.log, 20))
			}
		}
	}
	// Peer authentication over the Unix socket: the postgres OS user is the superuser.
	admin := func(stdin string, args ...string) command {
		return command{
			name:  t["runuser"],
			args:  append([]string{"-u", "postgres", "--", t["psql"], "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"}, args...),
			stdin: stdin,
		}
	}
	ready := func() error {
		_, err := run(admin("", "-c", "SELECT 1"))
		return err
	}
	if err := waitFor(deadline, "postgres", ready, nil); err != nil {
		if logFile != "" {
			err = fmt.Errorf("%v\n%s", err, tail(logFile, 20))
		}
		return err
	}
	tcp := func() error {
		if !listening(postgresPort) {
			return fmt.Errorf("nothing listens on %s:%d (listen_addresses, port?)", Host, postgresPort)
		}
		return nil
	}
	if err := waitFor(deadline, "postgres over TCP", tcp, nil); err != nil {
		return err
	}
	_, err = run(admin(postgresSetup, "-f", "-"))
	return err
}

// postgresCluster returns the cluster on port 5432, creating one if the
// machine has none (apt normally creates "main").
func postgresCluster(t map[string]string) (cluster, error) {
	list := func() ([]cluster, error) {
		out, err := run(command{name: t["pg_lsclusters"], args: []string{"-h"}})
		if err != nil {
			return nil, err
		}
		var cs []cluster
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			c := cluster{version: f[0], name: f[1], port: f[2], status: f[3]}
			if len(f) >= 7 {
				c.log = f[6]
			}
			cs = append(cs, c)
		}
		return cs, nil
	}
	cs, err := list()
	if err != nil {
		return cluster{}, err
	}
	if len(cs) == 0 {
		version, err := newestPostgres()
		if err != nil {
			return cluster{}, err
		}
		if _, err := run(command{name: t["pg_createcluster"], args: []string{"--port", strconv.Itoa(postgresPort), version, "main"}}); err != nil {
			return cluster{}, err
		}
		if cs, err = list(); err != nil {
			return cluster{}, err
		}
	}
	for _, c := range cs {
		if c.port == strconv.Itoa(postgresPort) {
			return c, nil
		}
	}
	return cluster{}, fmt.Errorf("no PostgreSQL cluster uses port %d: %+v", postgresPort, cs)
}

// newestPostgres returns the newest server version installed, like "15".
func newestPostgres() (string, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	best, bestNum := "", -1.0
	for _, b := range bins {
		v := filepath.Base(filepath.Dir(filepath.Dir(b)))
		if n, err := strconv.ParseFloat(v, 64); err == nil && n > bestNum {
			best, bestNum = v, n
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w: no PostgreSQL server in /usr/lib/postgresql", ErrUnavailable)
	}
	return best, nil
}

// loginPostgres checks that the tracewire user logs in over TCP with its password.
func loginPostgres(s Server) error {
	psql, err := tool("psql")
	if err != nil {
		return err
	}
	_, err = run(command{
		name: psql,
		args: []string{"-X", "-w", "-q", "-t", "-c", "SELECT 1", s.DSN},
		env:  []string{"PGCONNECT_TIMEOUT=5"},
	})
	return err
}
