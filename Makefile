# Tracewire. Everything runs as root on a Linux host with BTF (see README).
GO        ?= go
BIN       := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build generate vmlinux offsets check-generated lint test demo clean

all: build

build:
	$(GO) build -o $(BIN)/agent ./cmd/agent

# Regenerate the bpf2go output (needs clang, llvm: apt-get install -y clang llvm libbpf-dev bpftool).
generate:
	$(GO) generate ./probes/... ./procscan/...

# Regenerate bpf/vmlinux.h from the running kernel's BTF.
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h

# Regenerate the struct offsets tables, per Go version and per grpc-go version (downloads toolchains and
# grpc releases through the module proxy).
offsets:
	$(GO) run ./internal/gobin/offsetgen -o internal/gobin/offsets.json -grpc-o internal/gobin/grpc_offsets.json

# The committed BPF objects must be exactly what `make generate` produces.
check-generated: generate
	git diff --exit-code -- probes procscan || { echo "committed bpf2go output is stale: run make generate and commit" >&2; exit 1; }

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Unit and end-to-end tests; e2e needs root and eBPF (with CI=true they fail instead of skipping).
test: check-generated lint fuzz-smoke
	$(GO) test -count=1 -timeout 25m ./...

# Every fuzz target for 2000 inputs (FUZZTIME=2000x), found by scripts/fuzz-smoke.sh.
.PHONY: fuzz-smoke
fuzz-smoke:
	GO=$(GO) ./scripts/fuzz-smoke.sh

# Build the agent and the demo service, drive a few requests, print the console waterfall.
demo: build
	$(GO) build -C testdata/apps/hello -o $(CURDIR)/$(BIN)/hello .
	./scripts/demo.sh

clean:
	rm -rf $(BIN)

# Overhead benchmark (root; ~10 s windows, run on an otherwise idle machine): the service without
# and with the agent, agent CPU and memory, lost spans, probe cost. Table on stdout, JSON in bench/.
.PHONY: bench bench-quick bench-hooks
bench:
	$(GO) run ./cmd/bench

# The same with 2 s windows, under 2 minutes: bench/results-quick.json.
bench-quick:
	$(GO) run ./cmd/bench -quick

# ns per hit of each hook kind the agent uses, on this kernel: bench/hookcost.json.
bench-hooks:
	$(GO) run ./cmd/bench -hookcost
