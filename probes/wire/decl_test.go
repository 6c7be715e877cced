package wire

import (
	"testing"

	"github.com/tracewire/tracewire/probes/probetest"
)

func TestDeclMatchesObject(t *testing.T) {
	probetest.CheckDecl(t, Decl, "wire_proc", bpfWireProc{})
}
