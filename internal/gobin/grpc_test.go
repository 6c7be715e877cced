package gobin

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// grpcTestVersions straddle the layout changes that matter most: v1.72.2
// embeds *Stream in ServerStream and ClientStream, v1.85.0 embeds Stream
// itself and moved clientStream's fields.
var grpcTestVersions = []string{"v1.72.2", "v1.85.0"}

// grpcProbe is offsetgen's grpc probe, so the test binaries link every type
// the table describes.
const grpcProbe = "offsetgen/testdata/grpcprobe.go"

// grpcTypes are the types the grpc table must describe (offsetgen's list).
var grpcTypes = []string{
	"google.golang.org/grpc/internal/transport.Stream",
	"google.golang.org/grpc/internal/transport.ServerStream",
	"google.golang.org/grpc/internal/transport.ClientStream",
	"google.golang.org/grpc/internal/transport.http2Server",
	"google.golang.org/grpc/internal/transport.http2Client",
	"google.golang.org/grpc/internal/transport.CallHdr",
	"google.golang.org/grpc.clientStream",
	"google.golang.org/grpc.csAttempt",
	"google.golang.org/grpc/peer.Peer",
	"google.golang.org/grpc/internal/status.Status",
	"google.golang.org/grpc/internal/status.Error",
	"google.golang.org/genproto/googleapis/rpc/status.Status",
}

// The split of transport.Stream into ServerStream and ClientStream, which
// embedded *Stream until Stream itself replaced it.
const (
	transportSplit  = "v1.69.0"
	streamEmbedded  = "v1.77.0"
	transportPkg    = "google.golang.org/grpc/internal/transport."
	grpcPkg         = "google.golang.org/grpc."
	genprotoStatus  = "google.golang.org/genproto/googleapis/rpc/status.Status"
	grpcStatusError = "google.golang.org/grpc/internal/status.Error"
)

// buildGRPCProbes builds the grpc probe against each version, with and
// without symbols and DWARF, returning the executables by version and
// "plain" or "stripped". Versions build concurrently; each one's two builds
// in turn, the second reusing the first's compiled packages.
func buildGRPCProbes(t *testing.T, versions []string) map[string]map[string]string {
	t.Helper()
	src, err := os.ReadFile(grpcProbe)
	if err != nil {
		t.Fatal(err)
	}
	exes := make(map[string]map[string]string, len(versions))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, v := range versions {
		dir := t.TempDir()
		exes[v] = map[string]string{"plain": filepath.Join(dir, "plain"), "stripped": filepath.Join(dir, "stripped")}
		wg.Go(func() {
			if err := buildGRPCProbe(dir, v, src, exes[v]); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("grpc %s: %w", v, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return exes
}

func buildGRPCProbe(dir, version string, src []byte, exes map[string]string) error {
	files := map[string]string{"go.mod": "module example.com/grpcprobe\n\ngo 1.21\n", "main.go": string(src)}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"get", grpcModule + "@" + version},
		{"mod", "tidy"},
		{"build", "-o", exes["plain"], "."},
		{"build", "-ldflags=-s -w", "-o", exes["stripped"], "."},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// grpcKnown are offsets and pointer flags read off DWARF independently of
// offsetgen (gRPC tracing research, one build per release); the tables must
// agree with them.
var grpcKnown = map[string][]struct {
	typ, field string
	off        uint64
	ptr        bool
}{
	"v1.72.2": {
		{transportPkg + "Stream", "ctx", 8, false},
		{transportPkg + "Stream", "method", 24, false},
		{transportPkg + "Stream", "id", 0, false},
		{transportPkg + "ServerStream", "Stream", 0, true},
		{transportPkg + "ClientStream", "Stream", 0, true},
		{transportPkg + "ClientStream", "ct", 8, true},
		{transportPkg + "ClientStream", "status", 72, true},
		{grpcPkg + "clientStream", "attempt", 216, true},
		{grpcPkg + "clientStream", "finished", 208, false},
		{grpcPkg + "csAttempt", "transport", 24, false},
		{grpcPkg + "csAttempt", "transportStream", 40, true},
		{grpcPkg + "csAttempt", "finished", 88, false},
	},
	"v1.85.0": {
		{transportPkg + "Stream", "ctx", 0, false},
		{transportPkg + "Stream", "method", 16, false},
		{transportPkg + "Stream", "id", 108, false},
		{transportPkg + "ServerStream", "Stream", 0, false},
		{transportPkg + "ClientStream", "Stream", 0, false},
		{transportPkg + "ClientStream", "ct", 360, true},
		{transportPkg + "ClientStream", "status", 392, true},
		{grpcPkg + "clientStream", "attempt", 192, true},
		{grpcPkg + "clientStream", "finished", 245, false},
		{grpcPkg + "csAttempt", "transport", 24, false},
		{grpcPkg + "csAttempt", "transportStream", 40, true},
		{grpcPkg + "csAttempt", "finished", 211, false},
	},
	"": { // every version
		{transportPkg + "http2Server", "conn", 16, false},
		{transportPkg + "http2Server", "peer", 56, false},
		{transportPkg + "http2Client", "conn", 128, false},
		{transportPkg + "http2Client", "remoteAddr", 152, false},
		{transportPkg + "http2Client", "localAddr", 168, false},
		{transportPkg + "CallHdr", "Method", 16, false},
		{grpcPkg + "clientStream", "callHdr", 0, true},
		{grpcPkg + "csAttempt", "cs", 16, true},
		{"google.golang.org/grpc/peer.Peer", "Addr", 0, false},
		{"google.golang.org/grpc/peer.Peer", "LocalAddr", 16, false},
		{"google.golang.org/grpc/internal/status.Status", "s", 0, true},
		{grpcStatusError, "s", 0, true},
		{genprotoStatus, "Code", 40, false},
		// Standard library types the gRPC probes read, from the Go table
		// in stripped binaries.
		{"net.TCPAddr", "IP", 0, false},
		{"net.TCPAddr", "Port", 24, false},
		{"context.valueCtx", "val", 32, false},
	},
}

func TestGRPCBinaries(t *testing.T) {
	exes := buildGRPCProbes(t, grpcTestVersions)
	table, err := loadGRPCTable()
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range grpcTestVersions {
		t.Run(version, func(t *testing.T) {
			plain, stripped := openOrFatal(t, exes[version]["plain"]), openOrFatal(t, exes[version]["stripped"])
			for _, b := range []*Binary{plain, stripped} {
				if got := b.Modules[grpcModule]; got != version {
					t.Fatalf("Modules[%s] = %q, want %s", grpcModule, got, version)
				}
			}
			if plain.dwarf == nil || stripped.dwarf != nil {
				t.Fatalf("has DWARF: plain %v, stripped %v; want true, false", plain.dwarf != nil, stripped.dwarf != nil)
			}
			types, ok := table.versions[version]
			if !ok {
				t.Fatalf("grpc_offsets.json has no %s", version)
			}
			// The probe links every type, so the DWARF checks every layout.
			structs, err := plain.structIndex()
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range grpcTypes {
				l := types[typ]
				if l == nil {
					t.Errorf("grpc_offsets.json has no %s in %s", typ, version)
					continue
				}
				if _, ok := structs[typ]; !ok {
					t.Errorf("%s is not in the probe's DWARF, so its table entry went unchecked", typ)
					continue
				}
				checkLayoutAgainstDWARF(t, plain, typ, l, version)
			}
			checkTableMatchesTwin(t, stripped, plain, table, version)
			for _, b := range []*Binary{plain, stripped} {
				for _, k := range append(grpcKnown[version], grpcKnown[""]...) {
					off, err := b.FieldOffset(k.typ, k.field)
					if err != nil || off != k.off {
						t.Errorf("FieldOffset(%s, %s) = %d, %v; want %d", k.typ, k.field, off, err, k.off)
					}
					ptr, err := b.FieldIsPointer(k.typ, k.field)
					if err != nil || ptr != k.ptr {
						t.Errorf("FieldIsPointer(%s, %s) = %v, %v; want %v", k.typ, k.field, ptr, err, k.ptr)
					}
				}
				// csAttempt.t became transport in v1.71.0.
				if _, err := b.FieldOffset(grpcPkg+"csAttempt", "t"); !errors.Is(err, ErrNoField) {
					t.Errorf("FieldOffset(csAttempt, t) error = %v, want ErrNoField", err)
				}
				if _, err := b.FieldIsPointer(grpcPkg+"csAttempt", "t"); !errors.Is(err, ErrNoField) {
					t.Errorf("FieldIsPointer(csAttempt, t) error = %v, want ErrNoField", err)
				}
			}
		})
	}
}

func openOrFatal(t *testing.T, path string) *Binary {
	t.Helper()
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestGRPCTableLookup(t *testing.T) {
	stream := transportPkg + "Stream"
	for _, tc := range []struct {
		name    string
		modules map[string]string
		typ     string
		want    uint64
		unknown bool   // the error must wrap ErrUnknownVersion
		mention string // if set, there must be an error naming it
	}{
		{name: "exact version", modules: map[string]string{grpcModule: "v1.83.1"}, typ: transportPkg + "ClientStream"},
		{name: "genproto keyed by grpc", modules: map[string]string{grpcModule: "v1.60.0"}, typ: genprotoStatus, want: 40},
		{name: "unknown patch release", modules: map[string]string{grpcModule: "v1.85.9"}, typ: stream, unknown: true, mention: "v1.85.9"},
		{name: "pseudo-version", modules: map[string]string{grpcModule: "v1.86.0-dev"}, typ: stream, unknown: true, mention: "v1.86.0-dev"},
		{name: "replaced by a directory", modules: map[string]string{grpcModule: "(devel)"}, typ: genprotoStatus, unknown: true, mention: "(devel)"},
		{name: "no grpc dependency", modules: map[string]string{}, typ: stream, mention: grpcModule},
		{name: "type not in the table", modules: map[string]string{grpcModule: "v1.85.0"}, typ: grpcPkg + "Server", mention: grpcPkg + "Server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Binary{GoVersion: "go1.26.8", Modules: tc.modules}
			field := "Stream"
			if tc.typ == genprotoStatus {
				field = "Code"
			}
			got, err := b.FieldOffset(tc.typ, field)
			_, ptrErr := b.FieldIsPointer(tc.typ, field)
			switch {
			case tc.mention == "" && (err != nil || got != tc.want):
				t.Errorf("FieldOffset(%s, %s) = %d, %v; want %d", tc.typ, field, got, err, tc.want)
			case tc.mention != "" && (err == nil || errors.Is(err, ErrNoField) || !strings.Contains(err.Error(), tc.mention)):
				t.Errorf("FieldOffset(%s, %s) error = %v, want one naming %q", tc.typ, field, err, tc.mention)
			case errors.Is(err, ErrUnknownVersion) != tc.unknown:
				t.Errorf("FieldOffset(%s, %s) error = %v, wraps ErrUnknownVersion: %v, want %v", tc.typ, field, err, !tc.unknown, tc.unknown)
			case (err == nil) != (ptrErr == nil) || errors.Is(ptrErr, ErrUnknownVersion) != tc.unknown:
				t.Errorf("FieldIsPointer(%s, %s) error = %v, FieldOffset's = %v", tc.typ, field, ptrErr, err)
			}
		})
	}
	// Standard library types stay on the Go table whatever grpc's version.
	b := &Binary{GoVersion: "go1.26.8", Modules: map[string]string{grpcModule: "v1.0.0"}}
	if off, err := b.FieldOffset("net.TCPAddr", "Port"); err != nil || off != 24 {
		t.Errorf("FieldOffset(net.TCPAddr, Port) with an unknown grpc = %d, %v; want 24", off, err)
	}
}

func TestTypePackage(t *testing.T) {
	for typ, want := range map[string]string{
		"google.golang.org/grpc.clientStream":                     "google.golang.org/grpc",
		"google.golang.org/grpc/internal/transport.Stream":        "google.golang.org/grpc/internal/transport",
		"google.golang.org/genproto/googleapis/rpc/status.Status": "google.golang.org/genproto/googleapis/rpc/status",
		"net/http.Request": "net/http",
		"runtime.g":        "runtime",
		"main.box[google.golang.org/grpc.clientStream]":        "main",
		"example.com/x.list[google.golang.org/grpc/peer.Peer]": "example.com/x",
		"noPackage": "",
	} {
		if got := typePackage(typ); got != want {
			t.Errorf("typePackage(%q) = %q, want %q", typ, got, want)
		}
	}
	for pkg, want := range map[string]bool{
		"google.golang.org/grpc":                           true,
		"google.golang.org/grpc/peer":                      true,
		"google.golang.org/genproto/googleapis/rpc":        true,
		"google.golang.org/genproto/googleapis/rpc/status": true,
		"google.golang.org/grpcx":                          false,
		"google.golang.org/genproto/googleapis/api":        false,
		"net/http": false,
	} {
		if got := underAny(pkg, grpcTablePackages); got != want {
			t.Errorf("underAny(%q, grpc table packages) = %v, want %v", pkg, got, want)
		}
	}
}

func TestGRPCOffsetsTableComplete(t *testing.T) {
	table, err := loadGRPCTable()
	if err != nil {
		t.Fatal(err)
	}
	var file tableFile
	if err := json.Unmarshal(grpcOffsetsJSON, &file); err != nil {
		t.Fatal(err)
	}
	releaseRE := regexp.MustCompile(`^v1\.([0-9]+)\.[0-9]+$`)
	minors := map[int]bool{}
	for v, info := range file.Versions {
		m := releaseRE.FindStringSubmatch(v)
		if m == nil {
			t.Errorf("grpc_offsets.json has %q, not a release", v)
			continue
		}
		minor, _ := strconv.Atoi(m[1])
		minors[minor] = true
		if info.Toolchain == "" || info.GenprotoRPC == "" {
			t.Errorf("grpc_offsets.json does not say how %s was built: %+v", v, info)
		}
		split, embedded := versionAtLeast(v, transportSplit), versionAtLeast(v, streamEmbedded)
		for _, typ := range grpcTypes {
			l := table.versions[v][typ]
			if l == nil {
				t.Errorf("grpc_offsets.json has no %s in %s", typ, v)
				continue
			}
			isSplitType := typ == transportPkg+"ServerStream" || typ == transportPkg+"ClientStream"
			if empty := len(l.offsets) == 0; empty != (isSplitType && !split) {
				t.Errorf("grpc_offsets.json has %d fields for %s in %s", len(l.offsets), typ, v)
			}
			if isSplitType && split && l.pointers["Stream"] == embedded {
				t.Errorf("grpc_offsets.json: %s.Stream is pointer %v in %s", typ, l.pointers["Stream"], v)
			}
		}
	}
	// grpc releases every minor version: a gap means a lost entry.
	for minor := 60; minor <= 85 || minors[minor]; minor++ {
		if !minors[minor] {
			t.Errorf("grpc_offsets.json has no v1.%d release", minor)
		}
	}
	// The reason for exact versions: a patch release changed the layout.
	cs := transportPkg + "ClientStream"
	if a, b := table.versions["v1.83.0"][cs], table.versions["v1.83.1"][cs]; a == nil || b == nil || a.offsets["ct"] == b.offsets["ct"] {
		t.Errorf("grpc_offsets.json: %s.ct should differ between v1.83.0 and v1.83.1", cs)
	}
}

// versionAtLeast compares release versions such as v1.69.0.
func versionAtLeast(v, floor string) bool {
	parse := func(s string) (n [3]int) {
		for i, p := range strings.SplitN(strings.TrimPrefix(s, "v"), ".", 3) {
			n[i], _ = strconv.Atoi(p)
		}
		return n
	}
	a, b := parse(v), parse(floor)
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return true
}
