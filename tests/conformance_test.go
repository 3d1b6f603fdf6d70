package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Outcomes of one libiscsi test.
const (
	outPass  = "pass"
	outFail  = "fail"
	outSkip  = "skip"
	outCrash = "crash" // the target process died during the test
	outHang  = "hang"  // the target stopped answering during the test
)

const conformanceLUNSize = 128 << 20

// TestConformance runs every ALL.* leaf test of libiscsi's iscsi-test-cu,
// one per process, against one long-lived target (restarted only after a
// crash or hang), and compares the outcomes with
// tests/conformance/expected.txt.
func TestConformance(t *testing.T) {
	runConformance(t, nil)
}

// runConformance is TestConformance with file-backed LUNs, or with LUNs
// on RBD images when rbd is set (TestConformanceRBD): the same tests,
// expectations and bar.
func runConformance(t *testing.T, rbd *rbdSpec) {
	needTools(t, "iscsi-test-cu", "iscsi-inq")
	kind := e2eTarget()
	if p := os.Getenv("RBDGW_CONFORMANCE_PEER"); p != "" && rbd == nil {
		kind = p
	}
	names, err := listConformanceTests()
	if err != nil {
		t.Fatal(err)
	}
	if f := os.Getenv("RBDGW_CONFORMANCE_FILTER"); f != "" {
		re, err := regexp.Compile(f)
		if err != nil {
			t.Fatalf("RBDGW_CONFORMANCE_FILTER: %v", err)
		}
		names = filterNames(names, re)
	}
	if len(names) == 0 {
		t.Fatal("no libiscsi tests selected")
	}
	jobs := 2
	if v := os.Getenv("RBDGW_CONFORMANCE_JOBS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 2 {
			jobs = n
		}
	}
	perTest := 60 * time.Second
	if v := os.Getenv("RBDGW_CONFORMANCE_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			perTest = d
		}
	}

	// One target (and LUN) per worker: libiscsi's tests reserve, reset and
	// rewrite their LUN, which must not disturb the test running beside.
	spec := serverSpec{RBD: rbd}
	for i := 0; i < jobs; i++ {
		spec.Targets = append(spec.Targets, targetDef{IQN: fmt.Sprintf("iqn.2026-01.io.rbdgw.test:conf%d", i), Size: conformanceLUNSize})
	}
	// The ReadOnly suite needs a write-protected LU; it gets its own target.
	roTarget := len(spec.Targets)
	spec.Targets = append(spec.Targets, targetDef{IQN: "iqn.2026-01.io.rbdgw.test:conf-ro", Size: conformanceLUNSize, ReadOnly: true})
	srv := startServer(t, kind, spec)
	label := kind
	if rbd != nil {
		label += "-rbd"
	}
	logDir := filepath.Join(repoRoot(), "tests", "results", "conformance-"+label)
	_ = os.RemoveAll(logDir)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sup := &supervisor{t: t, srv: srv, spec: spec, perTest: perTest, logDir: logDir, roTarget: roTarget}

	start := time.Now()
	results := make(map[string]result, len(names))
	var resMu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < jobs; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for name := range work {
				r := sup.runTest(w, name)
				resMu.Lock()
				results[name] = r
				resMu.Unlock()
			}
		}(w)
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()

	var np, nf, ns int
	for _, n := range names {
		switch results[n].outcome {
		case outPass:
			np++
		case outSkip:
			ns++
		default:
			nf++
		}
	}
	summary := fmt.Sprintf("conformance: %d passed, %d failed, %d skipped, %d crashes, %d hangs", np, nf, ns, sup.crashes, sup.hangs)
	t.Logf("%s (%s, %d tests in %v, logs in %s)", summary, label, len(names), time.Since(start).Round(time.Second), logDir)
	fmt.Println(summary)

	got := map[string]string{}
	for _, n := range names {
		got[n] = results[n].outcome
	}
	writeExpectations(filepath.Join(logDir, "results.txt"), got)
	for _, n := range names {
		if o := results[n].outcome; o != outPass && o != outSkip {
			t.Logf("  %-55s %-5s %s", n, o, results[n].detail)
		}
	}

	expPath := filepath.Join(repoRoot(), "tests", "conformance", "expected.txt")
	if kind != "rbdgw" {
		t.Logf("peer %s: results in %s, not compared with %s", kind, filepath.Join(logDir, "results.txt"), expPath)
		return
	}
	if os.Getenv("RBDGW_CONFORMANCE_UPDATE") == "1" && rbd == nil {
		if os.Getenv("RBDGW_CONFORMANCE_FILTER") != "" {
			// Keep the lines of tests that were not run.
			old, _ := readExpectations(expPath)
			for n, o := range got {
				old[n] = o
			}
			got = old
		}
		if err := writeExpectations(expPath, got); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", expPath)
		return
	}
	want, err := readExpectations(expPath)
	if err != nil {
		t.Fatalf("%v (RBDGW_CONFORMANCE_UPDATE=1 writes it)", err)
	}
	diffs := compareExpectations(want, got)
	for _, d := range diffs {
		t.Log("  " + d.String())
		fmt.Println("conformance diff: " + d.String())
	}
	for _, d := range diffs {
		if d.regression {
			t.Errorf("regression: %s", d)
		}
	}
	if sup.crashes > 0 || sup.hangs > 0 {
		t.Errorf("the target crashed %d times and hung %d times (see %s)", sup.crashes, sup.hangs, logDir)
	}
}

// listConformanceTests returns the leaf tests of family ALL.
func listConformanceTests() ([]string, error) {
	out, err := run(30*time.Second, "iscsi-test-cu", "--list")
	if err != nil {
		return nil, fmt.Errorf("iscsi-test-cu --list: %v: %s", err, out)
	}
	var names []string
	for _, l := range strings.Fields(out) {
		if strings.HasPrefix(l, "ALL.") && strings.Count(l, ".") == 2 {
			names = append(names, l)
		}
	}
	return names, nil
}

func filterNames(names []string, re *regexp.Regexp) []string {
	var out []string
	for _, n := range names {
		if re.MatchString(n) {
			out = append(out, n)
		}
	}
	return out
}

type result struct {
	outcome string
	detail  string
}

// supervisor shares one target process between the workers. A test runs
// under mu.RLock; restarting the target takes mu.Lock, so no test runs
// across a restart.
type supervisor struct {
	t       *testing.T
	srv     server
	spec    serverSpec
	perTest time.Duration
	logDir  string
	// roTarget is the index of the write-protected target that the
	// ALL.ReadOnly tests use instead of their worker's.
	roTarget int

	mu             sync.RWMutex
	gen            int // bumped on every restart
	crashes, hangs int // guarded by mu (write lock)
}

// runTest runs one libiscsi test on worker w's LUN. When the target dies
// or stops answering, it is restarted and the test re-run alone, so the
// outcome is attributed to the test that causes it, not its neighbour.
func (s *supervisor) runTest(w int, name string) result {
	s.mu.RLock()
	gen := s.gen
	r := s.attempt(w, name, "")
	s.mu.RUnlock()
	if r.outcome != outCrash && r.outcome != outHang {
		return r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == gen {
		s.recordAndRestart(r)
	}
	r2 := s.attempt(w, name, ".rerun")
	if r2.outcome == outCrash || r2.outcome == outHang {
		s.recordAndRestart(r2)
		return r2
	}
	r2.detail = strings.TrimSpace(r2.detail + " (the target " + r.outcome + "ed while it ran beside another test; alone it did not)")
	return r2
}

// recordAndRestart counts a crash or hang and restarts the target. Called
// with mu held for writing.
func (s *supervisor) recordAndRestart(r result) {
	if r.outcome == outCrash {
		s.crashes++
	} else {
		s.hangs++
	}
	s.gen++
	s.t.Logf("target %s: %s; restarting", r.outcome, r.detail)
	if err := s.srv.Restart(); err != nil {
		s.t.Fatalf("restarting %s after a %s: %v", s.srv.Kind(), r.outcome, err)
	}
}

func (s *supervisor) url(w int) string {
	return lunURL(s.srv, s.spec.Targets[w].IQN, nil)
}

// targetFor picks the target a test runs on: its worker's, or the
// write-protected one for the ReadOnly suite.
func (s *supervisor) targetFor(w int, name string) int {
	if strings.HasPrefix(name, "ALL.ReadOnly.") {
		return s.roTarget
	}
	return w
}

// attempt runs name once and classifies the outcome, probing the target
// afterwards.
func (s *supervisor) attempt(w int, name, suffix string) result {
	w = s.targetFor(w, name)
	ctx, cancel := context.WithTimeout(context.Background(), s.perTest)
	defer cancel()
	args := []string{"--dataloss", "--allow-sanitize", "-i", initiator1, "-I", initiator2, "-t", name, s.url(w)}
	if strings.HasPrefix(name, "ALL.MultipathIO.") {
		// A second path to the same LU: another session through the same
		// portal, which is what the multipath tests need to run at all.
		args = append(args, s.url(w))
	}
	cmd := exec.CommandContext(ctx, "iscsi-test-cu", args...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	timedOut := ctx.Err() != nil
	_ = os.WriteFile(filepath.Join(s.logDir, name+suffix+".log"), out, 0o644)

	if exited, werr := s.srv.Exited(); exited {
		return result{outCrash, fmt.Sprintf("%s exited during %s: %v", s.srv.Kind(), name, werr)}
	}
	if perr := s.probe(w); perr != nil {
		if exited, werr := s.srv.Exited(); exited {
			return result{outCrash, fmt.Sprintf("%s exited during %s: %v", s.srv.Kind(), name, werr)}
		}
		return result{outHang, fmt.Sprintf("target stopped answering after %s: %v", name, perr)}
	}
	if timedOut {
		return result{outFail, fmt.Sprintf("iscsi-test-cu did not finish within %v", s.perTest)}
	}
	return classify(string(out), err)
}

// probe checks that the target still logs in and answers INQUIRY.
func (s *supervisor) probe(w int) error {
	var err error
	for i := 0; i < 2; i++ {
		if _, err = run(10*time.Second, "iscsi-inq", "-i", initiator1, s.url(w)); err == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

var summaryRe = regexp.MustCompile(`(?m)^\s*tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)

// classify reads CUnit's run summary ("tests total ran passed failed
// inactive"). libiscsi reports a test it cannot run as passed with a
// "[SKIPPED]" line; we count those as skipped.
func classify(out string, runErr error) result {
	m := summaryRe.FindStringSubmatch(out)
	if m == nil {
		var ee *exec.ExitError
		detail := "no CUnit summary"
		if errors.As(runErr, &ee) {
			detail += fmt.Sprintf(" (exit %d)", ee.ExitCode())
		}
		return result{outFail, detail + ": " + lastLines(out, 3)}
	}
	passed, _ := strconv.Atoi(m[3])
	failed, _ := strconv.Atoi(m[4])
	switch {
	case failed > 0:
		return result{outFail, firstFailure(out)}
	case passed == 0:
		return result{outFail, "no test ran: " + lastLines(out, 3)}
	case strings.Contains(out, "[SKIPPED]"):
		return result{outSkip, ""}
	}
	return result{outPass, ""}
}

// firstFailure picks the line that best explains a CUnit failure: a
// libiscsi "[FAILED]" message, else CUnit's "1. file.c:line - assertion".
func firstFailure(out string) string {
	var assertion string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if i := strings.Index(l, "[FAILED]"); i >= 0 {
			return l[i:]
		}
		if assertion == "" && strings.HasPrefix(l, "1. ") {
			assertion = l
		}
	}
	if assertion != "" {
		return assertion
	}
	return lastLines(out, 2)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// ---- expectations file: one "name outcome" line per test ----

func readExpectations(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		fs := strings.Fields(l)
		if len(fs) != 2 || (fs[1] != outPass && fs[1] != outFail && fs[1] != outSkip) {
			return nil, fmt.Errorf("%s:%d: want \"<test> pass|fail|skip\", got %q", path, ln, l)
		}
		m[fs[0]] = fs[1]
	}
	return m, sc.Err()
}

// writeExpectations writes outcomes sorted by name; crashes and hangs are
// written as fail.
func writeExpectations(path string, m map[string]string) error {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# libiscsi iscsi-test-cu --dataloss outcomes expected of rbdgw, one test a line.\n")
	b.WriteString("# Regenerate with: RBDGW_CONFORMANCE_UPDATE=1 go test ./tests -run TestConformance -v\n")
	for _, n := range names {
		o := m[n]
		if o == outCrash || o == outHang {
			o = outFail
		}
		fmt.Fprintf(&b, "%s %s\n", n, o)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

type diff struct {
	name, want, got string
	regression      bool
}

func (d diff) String() string {
	tag := "changed"
	switch {
	case d.regression:
		tag = "REGRESSION"
	case d.want == "":
		tag = "new"
	case d.got == outPass:
		tag = "improved"
	}
	want := d.want
	if want == "" {
		want = "-"
	}
	return fmt.Sprintf("%-10s %-55s expected %-5s got %s", tag, d.name, want, d.got)
}

// compareExpectations lists every test whose outcome differs. A test that
// passed and now does not is a regression.
func compareExpectations(want, got map[string]string) []diff {
	var ds []diff
	for n, g := range got {
		w := want[n]
		if w == g || (w == outFail && (g == outCrash || g == outHang)) {
			continue
		}
		ds = append(ds, diff{name: n, want: w, got: g, regression: w == outPass})
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].name < ds[j].name })
	return ds
}
