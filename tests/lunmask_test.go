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
// host's LUN list limits what REPORT LUNS shows it and what it may open,
// and a host given no disk sees none (not every LUN of the target).
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
	if got := luns(initiator2); len(got) != 0 {
		t.Errorf("%s, given no disk, sees LUNs %v, want none", initiator2, got)
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

// TestTargetDeniesByDefault: a target with no hosts and no CHAP admits
// nobody (ceph-iscsi admits nobody until a host is defined): an anonymous
// login is refused and discovery does not list the target.
func TestTargetDeniesByDefault(t *testing.T) {
	needTools(t, "iscsi-ls", "iscsi-inq")
	if e2eTarget() != "rbdgw" {
		t.Skip("tgtd admits every initiator to a target without ACLs")
	}
	const closedIQN = "iqn.2026-01.io.rbdgw.test:closed"
	s := startServer(t, "rbdgw", serverSpec{Targets: []targetDef{
		{IQN: closedIQN, Size: lunSize, DenyByDefault: true},
		{IQN: maskIQN, Size: lunSize, Hosts: []hostACL{{IQN: initiator1, LUNs: []uint64{0}}}},
	}})
	out, err := inquiry(initiator1, fmt.Sprintf("iscsi://%s/%s/0", s.Portal(), closedIQN))
	if err == nil {
		t.Fatalf("anonymous login to a target without hosts succeeded:\n%s", out)
	}
	out, err = run(20*time.Second, "iscsi-ls", "-i", initiator1, portalURL(s, nil))
	if err != nil {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	if strings.Contains(out, closedIQN) || !strings.Contains(out, maskIQN) {
		t.Fatalf("discovery lists %q, want only %s:\n%s", closedIQN, maskIQN, out)
	}
	// Another initiator, not a host of either target, is refused both.
	if out, err := inquiry(initiator2, fmt.Sprintf("iscsi://%s/%s/0", s.Portal(), maskIQN)); err == nil {
		t.Fatalf("%s, not a host, logged in:\n%s", initiator2, out)
	}
}
