package wire

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/kernel"
)

// ownSockets are the C and C++ runtime libraries, whose FIONREAD is only on
// descriptors of their own (glibc's resolver sizes DNS answers with it,
// libstdc++'s file streams their input), never on the application's sockets.
var ownSockets = []string{"libc.so", "ld-musl", "libstdc++.so"}

// systemBins are directories whose ../lib is the system's, not a runtime's.
var systemBins = map[string]bool{"/usr/bin": true, "/bin": true, "/usr/sbin": true, "/sbin": true, "/usr/local/bin": true}

// asks caches what a file's code asks, by file identity: every target of
// one runtime maps the same files.
var asks sync.Map // kernel.FileID -> bool

// runtimeAsksFIONREAD tells whether process pid's runtime may ask FIONREAD
// (and the file that does): its executable, the executable files it maps,
// and the shared objects in its own ../lib, which a runtime loads later
// (a JDK's libnet and libnio). A file that cannot be read counts as asking.
// The C and C++ runtime libraries do not count (ownSockets).
// What the application's own code asks at run time through a generic
// ioctl (Python's fcntl.ioctl, say) is not visible here.
func runtimeAsksFIONREAD(pid int) (bool, string) {
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	files := []string{"/proc/" + strconv.Itoa(pid) + "/exe"}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
		if dir := filepath.Dir(exe); !systemBins[dir] {
			libs, _ := filepath.Glob(filepath.Join(root, filepath.Dir(dir), "lib", "*.so"))
			files = append(files, libs...)
		}
	}
	files = append(files, mappedFiles(pid, root)...)
	for _, f := range files {
		if fileAsks(f) {
			return true, f
		}
	}
	return false, ""
}

// mappedFiles lists the executable file mappings of pid, under root.
func mappedFiles(pid int, root string) []string {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.Contains(fields[1], "x") || !strings.HasPrefix(fields[5], "/") || seen[fields[5]] {
			continue
		}
		if base := filepath.Base(fields[5]); slices.ContainsFunc(ownSockets, func(p string) bool { return strings.HasPrefix(base, p) }) {
			continue
		}
		seen[fields[5]] = true
		out = append(out, root+fields[5])
	}
	return out
}

func fileAsks(path string) bool {
	id, err := kernel.StatFile(path)
	if err != nil {
		return true
	}
	if v, ok := asks.Load(id); ok {
		return v.(bool)
	}
	yes, err := gobin.FileAsksFIONREAD(path)
	if err != nil {
		yes = true
	}
	asks.Store(id, yes)
	return yes
}
