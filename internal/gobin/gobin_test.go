package gobin

import (
	"bytes"
	"debug/dwarf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// The test server pulls in a locally replaced dependency so Modules has
// something to report, and links the HTTP client in (never run) so the
// client-side types reach DWARF too.
var testProgram = map[string]string{
	"go.mod": `module example.com/srv

go 1.21

require example.com/dep v1.2.3

replace example.com/dep => ./dep
`,
	"main.go": `package main

import (
	"fmt"
	"net/http"
	"os"

	"example.com/dep"
)

func main() {
	if len(os.Args) > 1 {
		resp, err := http.Get(os.Args[1])
		if err == nil {
			resp.Body.Close()
		}
		return
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, dep.Greeting, r.Method, r.URL.Path)
	})
	_ = http.ListenAndServe("127.0.0.1:0", nil)
}
`,
	"dep/go.mod": "module example.com/dep\n\ngo 1.21\n",
	"dep/dep.go": "package dep\n\nconst Greeting = \"hello\"\n",
}

// variant is one way of building testProgram.
type variant struct {
	name      string
	toolchain string   // GOTOOLCHAIN; empty for the one running the test
	flags     []string // extra go build flags
	twin      string   // for stripped variants, the same build with symbols and DWARF
	noPattern bool     // built by a Go without net/http.Request.Pattern (added in 1.23)
	external  bool     // linked by the C linker, so needs a C toolchain
}

var variants = []variant{
	{name: "plain"},
	{name: "stripped", flags: []string{"-ldflags=-s -w"}, twin: "plain"},
	{name: "pie", flags: []string{"-buildmode=pie"}},
	{name: "pie-stripped", flags: []string{"-buildmode=pie", "-ldflags=-s -w"}, twin: "pie"},
	{name: "go1.21", toolchain: "go1.21.13", noPattern: true},
	{name: "go1.22", toolchain: "go1.22.12", noPattern: true},
	// The C linker puts start-up code before runtime.text, so stripped
	// binaries must find it in pclntab (Go <= 1.25, where the pclntab is
	// also merged into .data.rel.ro) or in moduledata (Go >= 1.26).
	{name: "external-pie", flags: []string{"-buildmode=pie", "-ldflags=-linkmode=external"}, external: true},
	{name: "external-pie-stripped", flags: []string{"-buildmode=pie", "-ldflags=-linkmode=external -s -w"}, twin: "external-pie", external: true},
	{name: "go1.25-external-pie", toolchain: "go1.25.7", flags: []string{"-buildmode=pie", "-ldflags=-linkmode=external"}, external: true},
	{name: "go1.25-external-pie-stripped", toolchain: "go1.25.7", flags: []string{"-buildmode=pie", "-ldflags=-linkmode=external -s -w"}, twin: "go1.25-external-pie", external: true},
}

// buildableVariants drops the externally linked variants when there is no
// C compiler to link them with.
func buildableVariants(t *testing.T) []variant {
	t.Helper()
	cc, err := exec.Command("go", "env", "CC").Output()
	if err != nil {
		t.Fatalf("go env CC: %v", err)
	}
	if _, err := exec.LookPath(strings.TrimSpace(string(cc))); err == nil {
		return variants
	}
	t.Logf("no C compiler %q: skipping externally linked variants", strings.TrimSpace(string(cc)))
	var vs []variant
	for _, v := range variants {
		if !v.external {
			vs = append(vs, v)
		}
	}
	return vs
}

func (v variant) goVersion() string {
	if v.toolchain == "" {
		return runtime.Version()
	}
	return v.toolchain
}

// hookedFuncs are the functions the HTTP server probes attach to.
var hookedFuncs = []string{
	"net/http.serverHandler.ServeHTTP",
	"net/http.(*response).finishRequest",
}

// buildVariants writes testProgram into a temporary directory and builds
// every variant, returning each executable's path by variant name.
// Toolchains build concurrently; one toolchain's variants build in turn,
// because concurrent builds would each compile the same standard library
// packages missing from a cold build cache.
func buildVariants(t *testing.T, variants []variant) map[string]string {
	t.Helper()
	src := t.TempDir()
	for name, content := range testProgram {
		path := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exes := make(map[string]string, len(variants))
	byToolchain := make(map[string][]variant)
	for _, v := range variants {
		exes[v.name] = filepath.Join(src, "bin", v.name)
		byToolchain[v.toolchain] = append(byToolchain[v.toolchain], v)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, group := range byToolchain {
		wg.Go(func() {
			for _, v := range group {
				if err := build(src, exes[v.name], v); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return exes
}

// build builds the module in src as v into exe.
func build(src, exe string, v variant) error {
	args := append([]string{"build", "-o", exe}, v.flags...)
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	if v.toolchain != "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+v.toolchain)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", v.name, err, out)
	}
	return nil
}

func TestBinaries(t *testing.T) {
	variants := buildableVariants(t)
	exes := buildVariants(t, variants)
	bins := make(map[string]*Binary, len(variants))
	for _, v := range variants {
		b, err := Open(exes[v.name])
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		t.Cleanup(func() { b.Close() })
		bins[v.name] = b
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			b := bins[v.name]
			if b.GoVersion != v.goVersion() {
				t.Errorf("GoVersion = %q, want %q", b.GoVersion, v.goVersion())
			}
			if got := b.Modules["example.com/dep"]; got != "v1.2.3" || len(b.Modules) != 1 {
				t.Errorf("Modules = %v, want only example.com/dep v1.2.3", b.Modules)
			}
			if stripped := v.twin != ""; stripped != (b.dwarf == nil) {
				t.Errorf("has DWARF = %v, want %v", b.dwarf != nil, !stripped)
			}
			for _, fn := range hookedFuncs {
				checkHook(t, b, exes[v.name], fn, bins[v.twin])
			}
			if _, err := b.HookOffset("main.noSuchFunction"); err == nil || !strings.Contains(err.Error(), "main.noSuchFunction") {
				t.Errorf("HookOffset(absent) error = %v, want one naming the function", err)
			}
			if v.twin == "" {
				checkTableMatchesDWARF(t, b)
			} else {
				table, err := loadGoTable()
				if err != nil {
					t.Fatal(err)
				}
				checkTableMatchesTwin(t, b, bins[v.twin], table, minorVersion.FindString(b.GoVersion))
			}
			checkKnownFields(t, b, v.noPattern)
		})
	}
}

// checkHook checks that fn's hook offset points, in the file itself, at an
// instruction uprobes emulate, and for a stripped binary that it is the
// same as in its unstripped twin.
func checkHook(t *testing.T, b *Binary, exe, fn string, twin *Binary) {
	t.Helper()
	off, err := b.HookOffset(fn)
	if err != nil {
		t.Errorf("HookOffset: %v", err)
		return
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code := make([]byte, maxInsnLen)
	if _, err := f.ReadAt(code, int64(off)); err != nil {
		t.Fatalf("read %s at %#x: %v", fn, off, err)
	}
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		t.Fatalf("decode %s at %#x: %v", fn, off, err)
	}
	if !(inst.Op == x86asm.PUSH && inst.Args[0] == x86asm.RBP) && inst.Op != x86asm.JBE {
		t.Errorf("HookOffset(%s) = %#x, which holds %v, want PUSH RBP or JBE", fn, off, inst)
	}
	if twin == nil {
		return
	}
	want, err := twin.HookOffset(fn)
	if err != nil {
		t.Fatalf("twin HookOffset: %v", err)
	}
	if off != want {
		t.Errorf("HookOffset(%s) = %#x from pclntab, %#x from .symtab in the unstripped twin", fn, off, want)
	}
}

// checkTableMatchesDWARF checks every Go table entry for b's Go version
// against b's DWARF, for each type the program's DWARF describes.
func checkTableMatchesDWARF(t *testing.T, b *Binary) {
	t.Helper()
	table, err := loadGoTable()
	if err != nil {
		t.Fatal(err)
	}
	minor := minorVersion.FindString(b.GoVersion)
	types, ok := table.versions[minor]
	if !ok {
		t.Fatalf("offsets table has no %s", minor)
	}
	structs, err := b.structIndex()
	if err != nil {
		t.Fatal(err)
	}
	compared := map[string]bool{}
	for typ, l := range types {
		if _, ok := structs[typ]; !ok {
			continue
		}
		compared[typ] = true
		checkLayoutAgainstDWARF(t, b, typ, l, minor)
	}
	for _, typ := range []string{"net/http.Request", "net/http.response", "net/http.conn", "net/http.Transport", "net/url.URL", "runtime.g"} {
		if !compared[typ] {
			t.Errorf("%s is not in the test program's DWARF, so its table entry went unchecked", typ)
		}
	}
}

// checkLayoutAgainstDWARF checks that typ's DWARF in b has exactly the
// fields of table layout l, at its offsets and with its pointer flags.
func checkLayoutAgainstDWARF(t *testing.T, b *Binary, typ string, l *structLayout, version string) {
	t.Helper()
	for field, want := range l.offsets {
		got, err := b.dwarfFieldOffset(typ, field)
		if err != nil || got != want {
			t.Errorf("%s.%s: DWARF says %d (err %v), %s table says %d", typ, field, got, err, version, want)
		}
		ptr, err := b.dwarfFieldIsPointer(typ, field)
		if err != nil || ptr != l.pointers[field] {
			t.Errorf("%s.%s: DWARF says pointer %v (err %v), %s table says %v", typ, field, ptr, err, version, l.pointers[field])
		}
	}
	// A field the table lacks would read as absent (ErrNoField) in
	// binaries without DWARF.
	for _, field := range dwarfFieldNames(t, b, typ) {
		if _, ok := l.offsets[field]; !ok {
			t.Errorf("%s.%s is in DWARF but not in the %s table", typ, field, version)
		}
	}
}

// dwarfFieldNames lists the members of struct typ in b's DWARF.
func dwarfFieldNames(t *testing.T, b *Binary, typ string) []string {
	t.Helper()
	structs, err := b.structIndex()
	if err != nil {
		t.Fatal(err)
	}
	dt, err := b.dwarf.Type(structs[typ])
	if err != nil {
		t.Fatalf("DWARF type %s: %v", typ, err)
	}
	var names []string
	for _, f := range dt.(*dwarf.StructType).Field {
		names = append(names, f.Name)
	}
	return names
}

// checkTableMatchesTwin checks that a binary without DWARF gets from the
// tables what its twin's DWARF says, for every field of every type the
// twin's DWARF describes in table.
func checkTableMatchesTwin(t *testing.T, b, twin *Binary, table *layoutTable, version string) {
	t.Helper()
	for typ, l := range table.versions[version] {
		for field := range l.offsets {
			want, err := twin.dwarfFieldOffset(typ, field)
			if errors.Is(err, errNotInDWARF) {
				break
			}
			got, gotErr := b.FieldOffset(typ, field)
			if err != nil || gotErr != nil || got != want {
				t.Errorf("%s.%s = %d (err %v) from the table, %d (err %v) from the twin's DWARF", typ, field, got, gotErr, want, err)
			}
			wantPtr, err := twin.dwarfFieldIsPointer(typ, field)
			gotPtr, gotErr := b.FieldIsPointer(typ, field)
			if err != nil || gotErr != nil || gotPtr != wantPtr {
				t.Errorf("%s.%s is pointer %v (err %v) from the table, %v (err %v) from the twin's DWARF", typ, field, gotPtr, gotErr, wantPtr, err)
			}
		}
	}
}

// checkKnownFields spot-checks offsets and the errors of FieldOffset.
func checkKnownFields(t *testing.T, b *Binary, noPattern bool) {
	t.Helper()
	for _, tc := range []struct {
		typ, field string
		want       uint64
	}{
		{"net/http.Request", "Method", 0},
		{"net/http.Request", "URL", 16},
		{"context.valueCtx", "key", 16},
	} {
		if got, err := b.FieldOffset(tc.typ, tc.field); err != nil || got != tc.want {
			t.Errorf("FieldOffset(%s, %s) = %d, %v; want %d", tc.typ, tc.field, got, err, tc.want)
		}
	}
	_, err := b.FieldOffset("net/http.Request", "Pattern")
	if noPattern && !errors.Is(err, ErrNoField) || !noPattern && err != nil {
		t.Errorf("FieldOffset(Request, Pattern) error = %v, want ErrNoField: %v", err, noPattern)
	}
	if _, err := b.FieldOffset("net/http.Request", "NoSuchField"); !errors.Is(err, ErrNoField) {
		t.Errorf("FieldOffset(Request, NoSuchField) error = %v, want ErrNoField", err)
	}
	if _, err := b.FieldOffset("net/http.NoSuchType", "X"); err == nil || errors.Is(err, ErrNoField) {
		t.Errorf("FieldOffset(NoSuchType, X) error = %v, want an error other than ErrNoField", err)
	}
}

func TestFieldOffsetUnknownVersion(t *testing.T) {
	b := &Binary{GoVersion: "go1.99.1"}
	_, err := b.FieldOffset("net/http.Request", "Method")
	if !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "go1.99.1") {
		t.Errorf("FieldOffset on go1.99.1 without DWARF: error = %v, want ErrUnknownVersion naming the version", err)
	}
	if _, err := b.FieldIsPointer("net/http.Request", "URL"); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("FieldIsPointer on go1.99.1 without DWARF: error = %v, want ErrUnknownVersion", err)
	}
}

func TestOffsetsTableComplete(t *testing.T) {
	table, err := loadGoTable()
	if err != nil {
		t.Fatal(err)
	}
	types := []string{
		"net/http.Request", "net/http.Response", "net/http.response", "net/http.conn",
		"net/http.Server", "net/http.Transport", "net/http.persistConn", "net/http.writeRequest",
		"net/http.requestAndChan", "net/url.URL", "net/url.Userinfo", "crypto/tls.ConnectionState",
		"context.valueCtx", "context.cancelCtx", "runtime.g", "net.TCPAddr",
	}
	for _, minor := range []string{"go1.21", "go1.22", "go1.23", "go1.24", "go1.25", "go1.26"} {
		for _, typ := range types {
			if l := table.versions[minor][typ]; l == nil || len(l.offsets) == 0 {
				t.Errorf("offsets table has no fields for %s in %s", typ, minor)
			}
		}
		// The probes follow these pointers; a table that lost the flags
		// would send them reading the pointer's own bytes.
		for _, f := range [][2]string{{"net/http.Request", "URL"}, {"net/url.URL", "User"}} {
			if l := table.versions[minor][f[0]]; l == nil || !l.pointers[f[1]] {
				t.Errorf("offsets table does not flag %s.%s as a pointer in %s", f[0], f[1], minor)
			}
		}
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a binary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	trueBin, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	// The same ELF relabelled for arm64 (e_machine is at byte 18) must be
	// refused before its contents matter.
	elfBytes, err := os.ReadFile(trueBin)
	if err != nil {
		t.Fatal(err)
	}
	elfBytes[18], elfBytes[19] = 183, 0 // EM_AARCH64, little endian
	arm := filepath.Join(dir, "arm64")
	if err := os.WriteFile(arm, elfBytes, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{text, "not an ELF file"},
		{trueBin, "not a Go binary"},
		{arm, "only amd64"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		b, err := Open(tc.path)
		if err == nil {
			b.Close()
			t.Errorf("Open(%s) succeeded, want error containing %q", tc.path, tc.want)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s) error = %v, want it to contain %q", tc.path, err, tc.want)
		}
	}
}

func TestHookInstruction(t *testing.T) {
	var (
		stackCheck    = []byte{0x49, 0x3b, 0x66, 0x10}                         // CMPQ SP, 16(R14)
		bigFrameCheck = []byte{0x4c, 0x8d, 0xa4, 0x24, 0x00, 0xfe, 0xff, 0xff, // LEAQ -0x200(SP), R12
			0x4d, 0x3b, 0x66, 0x10} // CMPQ R12, 16(R14)
		jbe    = []byte{0x0f, 0x86, 0x10, 0x00, 0x00, 0x00} // JBE +0x10
		pushBP = []byte{0x55}                               // PUSHQ BP
		movBP  = []byte{0x48, 0x89, 0xe5}                   // MOVQ SP, BP
		call   = []byte{0xe8, 0x00, 0x00, 0x00, 0x00}       // CALL
		ret    = []byte{0xc3}                               // RET
	)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		code []byte
		want uint64
		ok   bool
	}{
		{"small frame", cat(stackCheck, jbe, pushBP, movBP, call), 10, true},
		{"big frame", cat(bigFrameCheck, jbe, pushBP, movBP, call), 18, true},
		{"nosplit frame", cat(pushBP, movBP, ret), 0, true},
		{"frameless, stack check", cat(stackCheck, jbe, call, pushBP), 4, true},
		{"leaf", cat(movBP, ret, pushBP), 0, false},
		{"JBE not after the check", cat(movBP, jbe, ret), 0, false},
	} {
		got, err := hookInstruction(tc.code)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("%s: hookInstruction = %d, %v; want %d", tc.name, got, err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("%s: hookInstruction = %d, want an error", tc.name, got)
		}
	}
}
