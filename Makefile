# rbdgw build, test and demo entry points. Targets are meant for a Debian 12
# machine where we are root (make deps installs what the tests drive).

export PATH := /usr/local/go/bin:$(PATH)
GO        ?= go
# The binaries always carry the librbd backend (Debian 12: Ceph 16 pacific).
# GO_TAGS= builds without it on a machine lacking librbd-dev.
GO_TAGS   ?= rbd,pacific
TAGS       = $(if $(GO_TAGS),-tags $(GO_TAGS))
BIN       := bin
FUZZTIME  ?= 8s
DEMO_DIR  ?= .data/demo
DEMO_PORTAL ?= 127.0.0.1:3260
E2E_TIMEOUT ?= 25m

# Debian packages: the initiators and reference target the end-to-end tests
# and the benchmark drive, and a C toolchain for -race (and cgo librbd).
DEB_PKGS := ca-certificates git gcc libc6-dev pkg-config librbd-dev librados-dev \
	libiscsi-bin tgt qemu-utils qemu-block-extra etcd-server

RACE_PKGS = ./target/... ./scsi/... ./alua/... ./gateway/ha/... ./gateway/peer/...

.PHONY: all build deps demo test vet unit fuzz e2e conformance test-rbd bench bench-rbd clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build $(TAGS) -o $(BIN)/ ./cmd/...

# Idempotent and quiet: apt runs only when a package is missing.
deps:
	@missing=$$(for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing" $$missing; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	fi
	@command -v $(GO) >/dev/null || { echo "make deps: Go not found (expected in /usr/local/go/bin)"; exit 1; }
	@$(GO) mod download

demo: deps build
	$(BIN)/rbdgw demo --data-dir $(DEMO_DIR) --portal $(DEMO_PORTAL)

vet:
	$(GO) vet $(TAGS) ./...

# -race where the concurrency lives (iSCSI sessions, device server, ALUA
# and the ownership drivers), plain elsewhere; the end-to-end suite runs
# separately, last.
unit:
	$(GO) test $(TAGS) -race -count=1 $(RACE_PKGS)
	$(GO) test $(TAGS) -count=1 $$($(GO) list ./... | grep -v -e '/target' -e '/scsi' -e '/alua' -e '/gateway/ha' -e '/tests$$')

# Every Fuzz target of every package, briefly (FUZZTIME each).
fuzz:
	FUZZTIME=$(FUZZTIME) GO_TAGS=$(GO_TAGS) tests/fuzz.sh

# End-to-end tests with real initiators against the built daemon.
e2e:
	RBDGW_GO_TAGS=$(GO_TAGS) $(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./tests/

conformance:
	RBDGW_GO_TAGS=$(GO_TAGS) $(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v -run TestConformance ./tests/

# The RBD tests on a throwaway single-node Ceph (memstore, 127.0.0.1),
# started for this target alone and stopped even on failure or Ctrl-C
# (ceph/with-cluster.sh): the librbd backend's unit tests under -race, the
# gateway's rbd: disks (and two gateways failing over one), the REST API's
# image operations, and the end-to-end tests on rbd: LUNs (data against
# rbd export, lock takeover by a second gateway, resize, the libiscsi
# conformance suite, the gwcli flow on two gateways). They always need the
# librbd build.
RBD_TAGS := rbd,pacific
RBD_E2E  := TestRBD|TestConformanceRBD|TestGwcliFlowTwoGatewaysRBD
test-rbd: deps
	ceph/install-deps.sh
	ceph/with-cluster.sh sh -c '\
		$(GO) test -tags $(RBD_TAGS) -race -count=1 ./rbdlun/rbd/ && \
		$(GO) test -tags $(RBD_TAGS) -race -count=1 -run RBD ./gateway/ && \
		$(GO) test -tags $(RBD_TAGS) -count=1 ./gateway/api/ && \
		RBDGW_GO_TAGS=$(RBD_TAGS) $(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v -run "$(RBD_E2E)" ./tests/'

test: deps vet unit fuzz e2e test-rbd

bench: deps build
	bench/compare.sh

# The side-by-side benchmark on RBD: rbdgw, tgtd with tgt-rbd and direct
# librbd (fio) on images of a micro cluster that bench/compare-rbd.sh
# starts and stops itself (REPS, SIZE_MB, PEERS: see the script).
bench-rbd: deps build
	ceph/install-deps.sh
	@dpkg-query -W -f='$${Status}\n' tgt-rbd fio 2>/dev/null | grep -c '^install ok installed' | grep -qx 2 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tgt-rbd fio >/dev/null; }
	bench/compare-rbd.sh

clean:
	rm -rf $(BIN) tests/results
