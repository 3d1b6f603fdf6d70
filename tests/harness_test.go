package tests

import (
	"path/filepath"
	"testing"
)

// The harness's own logic: these run without any daemon or tool.

func TestClassifyCUnitOutput(t *testing.T) {
	summary := func(passed, failed int) string {
		return "Run Summary:    Type  Total    Ran Passed Failed Inactive\n" +
			"              suites      1      1    n/a      0        0\n" +
			"               tests      1      1      " + itoa(passed) + "      " + itoa(failed) + "        0\n"
	}
	cases := []struct {
		out, want string
	}{
		{"Suite: Read10\n  Test: Simple ...passed\n" + summary(1, 0), outPass},
		{"    [SKIPPED] COMPAREANDWRITE is not implemented.\n" + summary(1, 0), outSkip},
		{"  Test: X ...FAILED\n    1. test.c:98  - CU_ASSERT\n" + summary(0, 1), outFail},
		{"Failed to login to target\n", outFail},
		{summary(0, 0), outFail},
	}
	for i, c := range cases {
		if got := classify(c.out, nil).outcome; got != c.want {
			t.Errorf("case %d: classify = %s, want %s", i, got, c.want)
		}
	}
}

func TestFirstFailure(t *testing.T) {
	out := "Suite: X\n  Test: Y ...    [FAILED] READ10 failed\n    1. t.c:9  - CU_FAIL\n"
	if got := firstFailure(out); got != "[FAILED] READ10 failed" {
		t.Errorf("firstFailure = %q", got)
	}
	out = "  Test: Y ...FAILED\n    1. t.c:9  - CU_ASSERT_EQUAL(a,1)\n"
	if got := firstFailure(out); got != "1. t.c:9  - CU_ASSERT_EQUAL(a,1)" {
		t.Errorf("firstFailure = %q", got)
	}
}

func TestCompareExpectations(t *testing.T) {
	want := map[string]string{"A": outPass, "B": outFail, "C": outSkip, "D": outPass, "E": outFail}
	got := map[string]string{"A": outPass, "B": outPass, "C": outFail, "D": outCrash, "E": outHang, "F": outPass}
	ds := compareExpectations(want, got)
	var regressions []string
	for _, d := range ds {
		if d.regression {
			regressions = append(regressions, d.name)
		}
	}
	if len(regressions) != 1 || regressions[0] != "D" {
		t.Errorf("regressions = %v, want [D]", regressions)
	}
	if len(ds) != 4 { // B improved, C changed, D regression, F new
		t.Errorf("diffs = %v, want 4", ds)
	}
}

func TestExpectationsRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "expected.txt")
	in := map[string]string{"ALL.A.B": outPass, "ALL.A.C": outCrash, "ALL.B.A": outSkip}
	if err := writeExpectations(p, in); err != nil {
		t.Fatal(err)
	}
	out, err := readExpectations(p)
	if err != nil {
		t.Fatal(err)
	}
	if out["ALL.A.B"] != outPass || out["ALL.A.C"] != outFail || out["ALL.B.A"] != outSkip || len(out) != 3 {
		t.Errorf("round trip gave %v", out)
	}
}
