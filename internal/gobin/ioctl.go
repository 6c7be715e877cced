package gobin

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
)

// fionread is the ioctl request FIONREAD (also SIOCINQ, TIOCINQ) on Linux,
// as the 32-bit little-endian immediate a call site loads.
var fionread = []byte{0x1b, 0x54, 0x00, 0x00}

// AsksFIONREAD tells whether the executable's own code may ask FIONREAD:
// whether the request number appears anywhere in its executable sections
// (a Go or cgo call site loads it as an immediate). A false positive only
// costs propagation; it errs on that side. Shared libraries are not read:
// they do not hold the program's sockets.
func (b *Binary) AsksFIONREAD() (bool, error) {
	for _, s := range b.elf.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		found, err := contains(s.Open(), fionread)
		if err != nil {
			return true, fmt.Errorf("read section %s: %w", s.Name, err)
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

// contains scans r for pat in chunks, without holding the whole section.
func contains(r io.Reader, pat []byte) (bool, error) {
	buf := make([]byte, 1<<20)
	keep := 0 // bytes carried over from the previous chunk
	for {
		n, err := io.ReadFull(r, buf[keep:])
		if bytes.Contains(buf[:keep+n], pat) {
			return true, nil
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		keep = copy(buf, buf[keep+n-(len(pat)-1):keep+n])
	}
}
