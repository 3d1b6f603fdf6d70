// Package tests holds end-to-end tests: they build the rbdgw binary, start
// it as a real process on 127.0.0.1 and drive it with real initiators
// (libiscsi's tools, qemu-img) and a raw TCP client.
//
// Environment:
//
//	RBDGW_E2E_TARGET=tgtd         run every test against Debian's tgtd instead
//	                              of rbdgw (to validate the harness itself)
//	RBDGW_CONFORMANCE_PEER=tgtd   run only the conformance suite against tgtd
//	RBDGW_CONFORMANCE_UPDATE=1    rewrite tests/conformance/expected.txt
//	RBDGW_CONFORMANCE_FILTER=RE   run only the libiscsi tests matching RE
//	RBDGW_CONFORMANCE_JOBS=N      tests run at once (default 2, at most 2 LUNs)
//	RBDGW_CONFORMANCE_TIMEOUT=D   per-test timeout (default 60s)
//	RBDGW_GO_TAGS=rbd,pacific     build tags for the rbdgw binary (make sets them;
//	                              the default when RBDGW_CEPH_CONF is set)
//	RBDGW_CEPH_CONF=FILE          run the RBD tests against this cluster
//	                              (ceph/micro-cluster.sh starts one)
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// rbdgwBin is the daemon built once by TestMain; buildErr is why not.
var (
	rbdgwBin string
	buildErr error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rbdgw-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Whatever happens (a failed test, a panic unwinding runMain), no
	// daemon started by a test outlives the test binary.
	defer killAllDaemons()

	if e2eTarget() == "rbdgw" {
		rbdgwBin = filepath.Join(dir, "rbdgw")
		buildErr = buildRbdgw(rbdgwBin)
		if buildErr != nil {
			fmt.Fprintln(os.Stderr, "tests: building ./cmd/rbdgw failed; every rbdgw test will fail:\n", buildErr)
		}
	}
	return m.Run()
}

// buildRbdgw compiles ./cmd/rbdgw into out, with the build tags the
// Makefile passes in RBDGW_GO_TAGS (its librbd backend: "rbd,pacific").
func buildRbdgw(out string) error {
	args := []string{"build"}
	tags := os.Getenv("RBDGW_GO_TAGS")
	if tags == "" && os.Getenv("RBDGW_CEPH_CONF") != "" {
		tags = "rbd,pacific" // the RBD tests need the librbd backend
	}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, "-o", out, "./cmd/rbdgw")...)
	cmd.Dir = repoRoot()
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/rbdgw: %v\n%s", err, b)
	}
	return nil
}

// e2eTarget names the implementation under test: "rbdgw" (default) or
// "tgtd".
func e2eTarget() string {
	if v := os.Getenv("RBDGW_E2E_TARGET"); v != "" {
		return v
	}
	return "rbdgw"
}

// needTools skips the test when an external program is missing. CI installs
// them all (make deps).
func needTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", n, err)
		}
	}
}

// repoRoot is the module root (the parent of tests/).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}
