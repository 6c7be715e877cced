// Command offsetgen regenerates internal/gobin/offsets.json: the byte offsets
// of every field of the struct types the agent's probes read, for each Go
// minor version the agent supports. The table is what gobin falls back on for
// binaries built without DWARF (-ldflags='-s -w').
//
// For every toolchain it builds a small probe program (the go command fetches
// the toolchain through GOTOOLCHAIN) and reads the layouts from its DWARF, so
// the numbers come from the real compiler rather than from hand-counting.
//
//	go run ./internal/gobin/offsetgen -o internal/gobin/offsets.json
package main

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
)

// toolchains are built in turn; each becomes one key of the table, named by
// its minor version because layouts are not expected to change in patch
// releases.
var toolchains = []string{
	"go1.21.13",
	"go1.22.12",
	"go1.23.12",
	"go1.24.13",
	"go1.25.7",
	"go1.26.8",
}

// structTypes are the types whose fields the probes read, named as in DWARF.
var structTypes = []string{
	"net/http.Request",
	"net/http.Response",
	"net/http.response",
	"net/http.conn",
	"net/http.Server",
	"net/http.Transport",
	"net/http.persistConn",
	"net/http.writeRequest",
	"net/http.requestAndChan",
	"net/url.URL",
	"net/url.Userinfo",
	"crypto/tls.ConnectionState",
	"context.valueCtx",
	"context.cancelCtx",
	"runtime.g",
	"net/http.transportRequest",
	"bufio.Reader",
	"net.conn",
	"net.netFD",
	"internal/poll.FD",
	"net/http.pattern",
	"runtime.hmap",
	"internal/runtime/maps.Map",
	"internal/runtime/maps.table",
	"internal/runtime/maps.groupsReference",
	"database/sql.Stmt",
	"database/sql.Tx",
	"database/sql.Rows",
	"database/sql.Conn",
	"database/sql.driverConn",
	"errors.errorString",
	"fmt.wrapError",
}

// versionedTypes exist only in some Go versions (ServeMux patterns since
// 1.22, swiss-table maps since 1.24 replacing hmap): where a version lacks
// one, the table records it with no fields, so every field is "absent".
var versionedTypes = map[string]bool{
	"net/http.pattern":                      true,
	"runtime.hmap":                          true,
	"internal/runtime/maps.Map":             true,
	"internal/runtime/maps.table":           true,
	"internal/runtime/maps.groupsReference": true,
}

// probeGoMod pins the language version to the oldest toolchain so every
// toolchain in the list accepts the module.
const probeGoMod = "module offsetprobe\n\ngo 1.21\n"

// probeMain really uses every type above: the linker only writes DWARF for
// types reachable from live code, so the server and client paths must be
// linked in even though they never run (the program is built, not executed).
const probeMain = `package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "never" {
		serveAndFetch()
		query()
	}
}

func query() {
	ctx := context.Background()
	db, err := sql.Open("none", "")
	if err != nil {
		fmt.Println(fmt.Errorf("open: %w", errors.New(err.Error())))
		return
	}
	rows, _ := db.QueryContext(ctx, "q")
	rows.Close()
	st, _ := db.PrepareContext(ctx, "q")
	st.ExecContext(ctx)
	tx, _ := db.BeginTx(ctx, nil)
	tx.Commit()
	c, _ := db.Conn(ctx)
	c.Close()
}

func serveAndFetch() {
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), "k", "v"))
	defer cancel()
	hdr := map[string][]string{"k": {"v"}}
	fmt.Println(len(hdr))
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			fmt.Fprintln(w, r.TLS.ServerName)
		}
		fmt.Fprintln(w, r.Method, r.URL.Path, r.URL.User.Username())
	})
	srv := &http.Server{Addr: "127.0.0.1:0"}
	go srv.ListenAndServe()
	u := &url.URL{Scheme: "http", Host: "127.0.0.1", User: url.UserPassword("u", "p")}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return
	}
	resp, err := (&http.Transport{}).RoundTrip(req)
	if err != nil {
		return
	}
	fmt.Println(resp.Status)
	resp.Body.Close()
}
`

func main() {
	out := flag.String("o", "", "file to write the JSON table to")
	flag.Parse()
	if *out == "" {
		log.Fatal("offsetgen: -o is required")
	}
	table := make(map[string]map[string]map[string]uint64, len(toolchains))
	for _, tc := range toolchains {
		layouts, err := layoutsFor(tc)
		if err != nil {
			log.Fatalf("offsetgen: %v", err)
		}
		table[minorVersion.FindString(tc)] = layouts
	}
	// encoding/json writes map keys sorted, so regenerating diffs cleanly.
	data, err := json.MarshalIndent(table, "", "  ")
	if err != nil {
		log.Fatalf("offsetgen: encode table: %v", err)
	}
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		log.Fatalf("offsetgen: %v", err)
	}
}

var minorVersion = regexp.MustCompile(`^go1\.[0-9]+`)

// layoutsFor builds the probe program with toolchain and returns, for every
// type in structTypes, its fields' byte offsets.
func layoutsFor(toolchain string) (map[string]map[string]uint64, error) {
	dir, err := os.MkdirTemp("", "offsetgen-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	exe, err := buildProbe(dir, toolchain)
	if err != nil {
		return nil, err
	}
	f, err := elf.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("%s: open probe: %w", toolchain, err)
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("%s: read probe DWARF: %w", toolchain, err)
	}
	layouts, err := structLayouts(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", toolchain, err)
	}
	for _, name := range structTypes {
		if _, ok := layouts[name]; !ok {
			if !versionedTypes[name] {
				return nil, fmt.Errorf("%s: probe DWARF has no struct %s (is the probe still using it?)", toolchain, name)
			}
			layouts[name] = map[string]uint64{}
		}
	}
	return layouts, nil
}

// buildProbe writes the probe module into dir and builds it for linux/amd64
// with toolchain, returning the executable's path.
func buildProbe(dir, toolchain string) (string, error) {
	files := map[string]string{"go.mod": probeGoMod, "main.go": probeMain}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("write probe %s: %w", name, err)
		}
	}
	exe := filepath.Join(dir, "probe")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = dir
	// The agent traces linux/amd64 binaries; cgo does not change these
	// layouts, so leave it off to need no C toolchain. GOFLAGS and GOWORK are
	// cleared so the caller's settings cannot leak into the probe's build.
	cmd.Env = append(os.Environ(),
		"GOTOOLCHAIN="+toolchain, "GOOS=linux", "GOARCH=amd64",
		"CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build probe with %s: %w\n%s", toolchain, err, out)
	}
	return exe, nil
}

// structLayouts returns the field offsets of the wanted struct types found in d.
func structLayouts(d *dwarf.Data) (map[string]map[string]uint64, error) {
	wanted := make(map[string]bool, len(structTypes))
	for _, name := range structTypes {
		wanted[name] = true
	}
	layouts := make(map[string]map[string]uint64, len(structTypes))
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read DWARF: %w", err)
		}
		if e == nil {
			return layouts, nil
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagStructType || !wanted[name] || layouts[name] != nil {
			continue
		}
		t, err := d.Type(e.Offset)
		if err != nil {
			return nil, fmt.Errorf("read DWARF type %s: %w", name, err)
		}
		st, ok := t.(*dwarf.StructType)
		if !ok {
			return nil, fmt.Errorf("DWARF type %s is a %T, not a struct", name, t)
		}
		fields := make(map[string]uint64, len(st.Field))
		for _, fld := range st.Field {
			fields[fld.Name] = uint64(fld.ByteOffset)
		}
		layouts[name] = fields
	}
}
