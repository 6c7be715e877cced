package nethttp

import (
	"testing"

	"github.com/tracewire/tracewire/probes/probetest"
)

func TestDeclMatchesObject(t *testing.T) {
	probetest.CheckDecl(t, Decl, "nethttp_offsets", bpfNethttpOffsets{})
}
