// Command offsetgen regenerates the struct layout tables gobin falls back on
// for binaries built without DWARF (-ldflags='-s -w'):
//
//   - offsets.json: the standard library types the agent's probes read, per
//     Go minor version;
//   - grpc_offsets.json: the google.golang.org/grpc types (and the genproto
//     status message grpc embeds), per exact grpc module version, because
//     grpc's layouts change even between patch releases.
//
// For every Go toolchain, and for every grpc version, it builds a small
// probe program (the go command fetches toolchains through GOTOOLCHAIN and
// modules into the shared module cache) and reads the layouts from its
// DWARF, so the numbers come from the real compiler rather than from
// hand-counting. Builds run -j at a time.
//
//	go run ./internal/gobin/offsetgen -o internal/gobin/offsets.json -grpc-o internal/gobin/grpc_offsets.json
//
// -grpc-versions v1.60.0,v1.85.0 rebuilds only those grpc versions and
// merges them into the existing -grpc-o file.
package main

import (
	"cmp"
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// toolchains each become one key of the Go table, named by its minor version
// because layouts are not expected to change in patch releases.
var toolchains = []string{
	"go1.21.13",
	"go1.22.12",
	"go1.23.12",
	"go1.24.13",
	"go1.25.7",
	"go1.26.8",
}

// grpcToolchain builds every grpc probe: recent grpc releases require a
// recent Go (v1.85 needs 1.26), and the toolchain does not change grpc's
// layouts, so the newest one serves all versions.
var grpcToolchain = toolchains[len(toolchains)-1]

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
	"net.TCPAddr",
	"internal/poll.FD",
	"net/http.pattern",
	"net/http.http2ClientConn",
	"net/http.http2clientStream",
	"net/http.http2MetaHeadersFrame",
	"net/http.http2responseWriter",
	"net/http.http2responseWriterState",
	"net/http.http2stream",
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

// grpcModule is the module whose version keys the grpc table.
const grpcModule = "google.golang.org/grpc"

// genprotoRPCModule holds the status message grpc's status wraps. Its layout
// is recorded under the grpc version whose probe resolved it.
const genprotoRPCModule = "google.golang.org/genproto/googleapis/rpc"

// minGRPC is the oldest grpc release the table covers.
const minGRPC = "v1.60.0"

// grpcTypes are the grpc struct types the probes read, named as in DWARF.
var grpcTypes = []string{
	"google.golang.org/grpc/internal/transport.Stream",
	"google.golang.org/grpc/internal/transport.ServerStream",
	"google.golang.org/grpc/internal/transport.ClientStream",
	"google.golang.org/grpc/internal/transport.http2Server",
	"google.golang.org/grpc/internal/transport.http2Client",
	"google.golang.org/grpc/internal/transport.CallHdr",
	"google.golang.org/grpc/internal/transport.headerFrame",
	"google.golang.org/grpc/internal/transport.clientHeaders",
	"google.golang.org/grpc.clientStream",
	"google.golang.org/grpc.csAttempt",
	"google.golang.org/grpc/peer.Peer",
	"google.golang.org/grpc/internal/status.Status",
	"google.golang.org/grpc/internal/status.Error",
	"google.golang.org/genproto/googleapis/rpc/status.Status",
}

// grpcVersionedTypes exist only in some grpc versions: transport split its
// Stream into ServerStream and ClientStream in v1.69.0, and its headerFrame
// into clientHeaders and serverHeaders later.
var grpcVersionedTypes = map[string]bool{
	"google.golang.org/grpc/internal/transport.ServerStream":  true,
	"google.golang.org/grpc/internal/transport.ClientStream":  true,
	"google.golang.org/grpc/internal/transport.headerFrame":   true,
	"google.golang.org/grpc/internal/transport.clientHeaders": true,
}

// probeGoMod pins the language version to the oldest toolchain so every
// toolchain in the list accepts the module.
const probeGoMod = "module offsetprobe\n\ngo 1.21\n"

// probeMain really uses every type in structTypes: the linker only writes
// DWARF for types reachable from live code, so the server and client paths
// must be linked in even though they never run (the program is built, not
// executed).
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

// grpcProbeMain is the grpc probe, a file of its own so gobin's tests can
// build the very same program.
//
//go:embed testdata/grpcprobe.go
var grpcProbeMain string

func main() {
	goOut := flag.String("o", "", "write the per-Go-version table (offsets.json) to this file")
	grpcOut := flag.String("grpc-o", "", "write the per-grpc-version table (grpc_offsets.json) to this file")
	grpcList := flag.String("grpc-versions", "", "comma-separated grpc versions to rebuild and merge into the existing -grpc-o file (default: rebuild every release since "+minGRPC+")")
	jobs := flag.Int("j", 2, "probe builds to run at once")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		log.Fatalf("offsetgen: unexpected arguments %q", flag.Args())
	case *goOut == "" && *grpcOut == "":
		log.Fatal("offsetgen: -o or -grpc-o is required")
	case *grpcList != "" && *grpcOut == "":
		log.Fatal("offsetgen: -grpc-versions needs -grpc-o")
	case *jobs < 1:
		log.Fatal("offsetgen: -j must be at least 1")
	}
	if *goOut != "" {
		if err := writeGoTable(*goOut, *jobs); err != nil {
			log.Fatalf("offsetgen: %v", err)
		}
	}
	if *grpcOut != "" {
		if err := writeGRPCTable(*grpcOut, *grpcList, *jobs); err != nil {
			log.Fatalf("offsetgen: %v", err)
		}
	}
}

// writeGoTable builds the Go probe with every toolchain and writes the table
// keyed by minor version.
func writeGoTable(out string, jobs int) error {
	results, err := buildAll(toolchains, jobs, goLayouts)
	if err != nil {
		return err
	}
	byMinor := make(map[string]probeResult, len(results))
	for tc, r := range results {
		byMinor[minorVersion.FindString(tc)] = r
	}
	return writeTable(out, byMinor)
}

// writeGRPCTable builds the grpc probe against every grpc release, or only
// against list (merging into the table already in out), and writes the
// table keyed by grpc version.
func writeGRPCTable(out, list string, jobs int) error {
	table := map[string]probeResult{}
	var versions []string
	if list == "" {
		var err error
		if versions, err = grpcReleases(); err != nil {
			return err
		}
	} else {
		for v := range strings.SplitSeq(list, ",") {
			if !release.MatchString(v) {
				return fmt.Errorf("-grpc-versions: %q is not a release version such as v1.85.0", v)
			}
			versions = append(versions, v)
		}
		old, err := readTable(out)
		if err != nil {
			return err
		}
		table = old
	}
	log.Printf("grpc: building %d versions with %s, %d at a time", len(versions), grpcToolchain, jobs)
	results, err := buildAll(versions, jobs, grpcLayouts)
	if err != nil {
		return err
	}
	maps.Copy(table, results)
	// A type added to grpcTypes since the other versions were generated is
	// missing from them until the whole table is rebuilt.
	for v, r := range table {
		for _, typ := range grpcTypes {
			if _, ok := r.types[typ]; !ok {
				log.Printf("warning: grpc %s has no layout for %s: rebuild every version (omit -grpc-versions)", v, typ)
			}
		}
	}
	return writeTable(out, table)
}

// release matches a released module version: no pre-release or dev suffix.
var release = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

// grpcReleases lists the grpc releases since minGRPC that the module proxy
// serves.
func grpcReleases() ([]string, error) {
	cmd := exec.Command("go", "list", "-m", "-versions", grpcModule)
	// Outside any module, so that the caller's go.mod or go.work cannot
	// change the answer.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+grpcToolchain, "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w\n%s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("list %s versions: %w", grpcModule, err)
	}
	var versions []string
	for i, v := range strings.Fields(string(out)) {
		if i > 0 && release.MatchString(v) && !versionLess(v, minGRPC) { // field 0 is the module path
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("list %s versions: no release since %s in %q", grpcModule, minGRPC, out)
	}
	return versions, nil
}

// layout is one struct type's fields in one version.
type layout struct {
	Offsets  map[string]uint64 `json:"offsets"`
	Pointers []string          `json:"pointers,omitempty"` // fields whose DWARF type is a pointer, sorted
}

// probeResult is what one probe build found.
type probeResult struct {
	info  versionInfo
	types map[string]layout // by DWARF type name
}

// buildAll runs build for every key, at most jobs at a time, and returns
// the results by key. Concurrent builds share the module and build caches,
// which the go command locks, so each module is downloaded only once.
func buildAll(keys []string, jobs int, build func(string) (probeResult, error)) (map[string]probeResult, error) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results = make(map[string]probeResult, len(keys))
		errs    []error
		slots   = make(chan struct{}, jobs)
	)
	for _, key := range keys {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			start := time.Now()
			r, err := build(key)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				log.Printf("%s: failed after %s", key, time.Since(start).Round(time.Second))
				return
			}
			results[key] = r
			log.Printf("%s: built in %s (%d/%d)", key, time.Since(start).Round(time.Second), len(results), len(keys))
		})
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// goLayouts builds the Go probe with toolchain and returns the layouts of
// structTypes.
func goLayouts(toolchain string) (probeResult, error) {
	dir, err := os.MkdirTemp("", "offsetgen-")
	if err != nil {
		return probeResult{}, err
	}
	defer os.RemoveAll(dir)
	files := map[string]string{"go.mod": probeGoMod, "main.go": probeMain}
	exe, err := buildProbe(dir, toolchain, files)
	if err != nil {
		return probeResult{}, fmt.Errorf("%s: %w", toolchain, err)
	}
	types, err := probeLayouts(exe, structTypes, versionedTypes)
	if err != nil {
		return probeResult{}, fmt.Errorf("%s: %w", toolchain, err)
	}
	return probeResult{info: versionInfo{Toolchain: toolchain}, types: types}, nil
}

// grpcLayouts builds the grpc probe against grpc version and returns the
// layouts of grpcTypes, with the genproto version the build resolved.
func grpcLayouts(version string) (probeResult, error) {
	dir, err := os.MkdirTemp("", "offsetgen-grpc-")
	if err != nil {
		return probeResult{}, err
	}
	defer os.RemoveAll(dir)
	files := map[string]string{"go.mod": probeGoMod, "main.go": grpcProbeMain}
	// go get raises the go line when grpc needs a newer Go; tidy then adds
	// the checksums of the packages the probe imports beyond grpc's root.
	exe, err := buildProbe(dir, grpcToolchain, files,
		[]string{"get", grpcModule + "@" + version},
		[]string{"mod", "tidy"})
	if err != nil {
		return probeResult{}, fmt.Errorf("grpc %s: %w", version, err)
	}
	bi, err := buildinfo.ReadFile(exe)
	if err != nil {
		return probeResult{}, fmt.Errorf("grpc %s: read probe build info: %w", version, err)
	}
	deps := map[string]string{}
	for _, d := range bi.Deps {
		deps[d.Path] = d.Version
	}
	// Minimal version selection could only raise grpc, but a table entry
	// under the wrong version would be silently wrong, so make sure.
	if got := deps[grpcModule]; got != version {
		return probeResult{}, fmt.Errorf("grpc %s: the probe was built with grpc %q", version, got)
	}
	if deps[genprotoRPCModule] == "" {
		return probeResult{}, fmt.Errorf("grpc %s: the probe does not depend on %s", version, genprotoRPCModule)
	}
	types, err := probeLayouts(exe, grpcTypes, grpcVersionedTypes)
	if err != nil {
		return probeResult{}, fmt.Errorf("grpc %s: %w", version, err)
	}
	info := versionInfo{Toolchain: grpcToolchain, GenprotoRPC: deps[genprotoRPCModule]}
	return probeResult{info: info, types: types}, nil
}

// buildProbe writes files into dir, runs each of the setup go commands
// there, and builds the module for linux/amd64 with toolchain, returning
// the executable's path.
func buildProbe(dir, toolchain string, files map[string]string, setup ...[]string) (string, error) {
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("write probe %s: %w", name, err)
		}
	}
	exe := filepath.Join(dir, "probe")
	for _, args := range append(setup, []string{"build", "-o", exe, "."}) {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		// The agent traces linux/amd64 binaries; cgo does not change these
		// layouts, so leave it off to need no C toolchain. GOFLAGS and
		// GOWORK are cleared so the caller's settings cannot leak into the
		// probe's build.
		cmd.Env = append(os.Environ(),
			"GOTOOLCHAIN="+toolchain, "GOOS=linux", "GOARCH=amd64",
			"CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go %s with %s: %w\n%s", strings.Join(args, " "), toolchain, err, out)
		}
	}
	return exe, nil
}

// probeLayouts reads the layouts of wanted from exe's DWARF. A type missing
// from DWARF is an error unless versioned says only some versions have it;
// it is then recorded with no fields, so every field reads as absent.
func probeLayouts(exe string, wanted []string, versioned map[string]bool) (map[string]layout, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("open probe: %w", err)
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("read probe DWARF: %w", err)
	}
	layouts, err := structLayouts(d, wanted)
	if err != nil {
		return nil, err
	}
	for _, name := range wanted {
		if _, ok := layouts[name]; !ok {
			if !versioned[name] {
				return nil, fmt.Errorf("probe DWARF has no struct %s (is the probe still using it?)", name)
			}
			layouts[name] = layout{Offsets: map[string]uint64{}}
		}
	}
	return layouts, nil
}

// structLayouts returns the layouts of the wanted struct types found in d.
func structLayouts(d *dwarf.Data, wanted []string) (map[string]layout, error) {
	layouts := make(map[string]layout, len(wanted))
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
		if e.Tag != dwarf.TagStructType || !slices.Contains(wanted, name) {
			continue
		}
		if _, dup := layouts[name]; dup {
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
		l := layout{Offsets: make(map[string]uint64, len(st.Field))}
		for _, fld := range st.Field {
			l.Offsets[fld.Name] = uint64(fld.ByteOffset)
			// debug/dwarf makes a PtrType of exactly DW_TAG_pointer_type,
			// the tag gobin checks in binaries with DWARF: *T and
			// unsafe.Pointer, not maps, channels or funcs, which Go
			// describes as typedefs or subroutine types.
			if _, ptr := fld.Type.(*dwarf.PtrType); ptr {
				l.Pointers = append(l.Pointers, fld.Name)
			}
		}
		slices.Sort(l.Pointers)
		layouts[name] = l
	}
}

// tableFile is the JSON shape of both tables, which gobin reads:
//
//	{"versions": {"v1.60.0": {"toolchain": "go1.26.8", "genproto_rpc": "v0.0.0-…"}, …},
//	 "types": {"google.golang.org/grpc/peer.Peer": [
//	   {"versions": ["v1.60.0", …], "offsets": {"Addr": 0, …}, "pointers": ["AuthInfo"]}, …]}}
//
// Each type lists its distinct layouts with the versions sharing each:
// most versions repeat the previous one's, so this is a fraction of the
// size of a layout per version, and a regenerated table diffs as the
// versions whose layouts changed.
type tableFile struct {
	Versions map[string]versionInfo  `json:"versions"`
	Types    map[string][]layoutSpan `json:"types"`
}

// versionInfo says how one version's layouts were obtained.
type versionInfo struct {
	Toolchain   string `json:"toolchain"`              // the Go that built the probe
	GenprotoRPC string `json:"genproto_rpc,omitempty"` // genprotoRPCModule's version in the grpc probe
}

// layoutSpan is a layout and the versions that have it.
type layoutSpan struct {
	Versions []string `json:"versions"`
	layout
}

// writeTable writes results, keyed by version, as a tableFile.
func writeTable(out string, results map[string]probeResult) error {
	file := tableFile{
		Versions: make(map[string]versionInfo, len(results)),
		Types:    map[string][]layoutSpan{},
	}
	versions := slices.SortedFunc(maps.Keys(results), versionCompare)
	spanOf := map[string]map[string]int{} // type -> layout as JSON -> index in file.Types[type]
	for _, v := range versions {
		file.Versions[v] = results[v].info
		for typ, l := range results[v].types {
			key, err := json.Marshal(l) // maps marshal sorted, so equal layouts give equal keys
			if err != nil {
				return fmt.Errorf("encode %s layout: %w", typ, err)
			}
			if spanOf[typ] == nil {
				spanOf[typ] = map[string]int{}
			}
			i, ok := spanOf[typ][string(key)]
			if !ok {
				i = len(file.Types[typ])
				spanOf[typ][string(key)] = i
				file.Types[typ] = append(file.Types[typ], layoutSpan{layout: l})
			}
			file.Types[typ][i].Versions = append(file.Types[typ][i].Versions, v)
		}
	}
	// encoding/json writes map keys sorted and spans are in order of their
	// first version, so regenerating diffs cleanly.
	data, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", out, err)
	}
	if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s: %d versions", out, len(versions))
	return nil
}

// readTable reads a table writeTable wrote, back into results by version.
// A missing file is an empty table.
func readTable(path string) (map[string]probeResult, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]probeResult{}, nil
	}
	if err != nil {
		return nil, err
	}
	var file tableFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	results := make(map[string]probeResult, len(file.Versions))
	for v, info := range file.Versions {
		results[v] = probeResult{info: info, types: map[string]layout{}}
	}
	for typ, spans := range file.Types {
		for _, s := range spans {
			for _, v := range s.Versions {
				r, ok := results[v]
				if !ok {
					return nil, fmt.Errorf("parse %s: %s lists version %s, which is not in versions", path, typ, v)
				}
				r.types[typ] = s.layout
			}
		}
	}
	return results, nil
}

var minorVersion = regexp.MustCompile(`^go1\.[0-9]+`)

// versionCompare orders versions by their numbers, so that v1.9.0 comes
// before v1.10.0 and go1.9 before go1.10.
func versionCompare(a, b string) int {
	if c := slices.Compare(versionNumbers(a), versionNumbers(b)); c != 0 {
		return c
	}
	return cmp.Compare(a, b)
}

func versionLess(a, b string) bool { return versionCompare(a, b) < 0 }

func versionNumbers(v string) []int {
	var nums []int
	for _, s := range strings.FieldsFunc(v, func(r rune) bool { return r < '0' || r > '9' }) {
		n, _ := strconv.Atoi(s) // only digits, so only overflow fails
		nums = append(nums, n)
	}
	return nums
}
