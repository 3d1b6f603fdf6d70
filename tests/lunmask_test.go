package tests

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const maskIQN = "iqn.2026-01.io.rbdgw.test:mask"

// TestLUNMasking gives two initiators different views of one target: a
// host's LUN list limits what REPORT LUNS shows it and what it may open.
func TestLUNMasking(t *testing.T) {
	needTools(t, "iscsi-ls", "iscsi-inq")
	if e2eTarget() != "rbdgw" {
		t.Skip("per-host LUN maps are an rbdgw feature")
	}
	s := startServer(t, "rbdgw", serverSpec{Targets: []targetDef{{
		IQN: maskIQN, Size: lunSize, ExtraLUNs: 2,
		Hosts: []hostACL{{IQN: initiator1, LUNs: []uint64{0, 2}}, {IQN: initiator2}},
	}}})

	luns := func(initiator string) []int {
		out, err := run(20*time.Second, "iscsi-ls", "-i", initiator, "-s", portalURL(s, nil))
		if err != nil {
			t.Fatalf("iscsi-ls -s as %s: %v\n%s", initiator, err, out)
		}
		var got []int
		for _, m := range regexp.MustCompile(`Lun:(\d+)\s+Type:DIRECT_ACCESS`).FindAllStringSubmatch(out, -1) {
			var n int
			fmt.Sscan(m[1], &n)
			got = append(got, n)
		}
		slices.Sort(got)
		return got
	}
	if got := luns(initiator1); !slices.Equal(got, []int{0, 2}) {
		t.Errorf("%s sees LUNs %v, want [0 2]", initiator1, got)
	}
	if got := luns(initiator2); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("%s sees LUNs %v, want [0 1 2]", initiator2, got)
	}
	url := func(lun int) string { return fmt.Sprintf("iscsi://%s/%s/%d", s.Portal(), maskIQN, lun) }
	if out, err := inquiry(initiator1, url(2)); err != nil {
		t.Errorf("%s cannot open its LUN 2: %v\n%s", initiator1, err, out)
	}
	// A masked LUN must not look like a disk: INQUIRY answers with
	// peripheral qualifier 011b (not connected) or the command fails.
	out, err := inquiry(initiator1, url(1))
	t.Logf("INQUIRY of masked LUN 1 as %s: err=%v\n%s", initiator1, err, out)
	if err == nil && strings.Contains(out, "Peripheral Device Type:DIRECT_ACCESS") && !strings.Contains(out, "NOT_SUPPORTED") {
		t.Errorf("%s opened masked LUN 1 as a disk:\n%s", initiator1, out)
	}
}
