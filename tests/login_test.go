package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	discIQN = "iqn.2026-01.io.rbdgw.test:disc"
	lunSize = 64 << 20
)

// TestDiscoveryAndInquiry checks SendTargets discovery with LUN listing and
// the standard INQUIRY and VPD pages as libiscsi's tools see them.
func TestDiscoveryAndInquiry(t *testing.T) {
	needTools(t, "iscsi-ls", "iscsi-inq")
	s := startServer(t, e2eTarget(), serverSpec{Targets: []targetDef{{IQN: discIQN, Size: lunSize}}})

	out, err := run(20*time.Second, "iscsi-ls", "-i", initiator1, "-s", portalURL(s, nil))
	if err != nil {
		t.Fatalf("iscsi-ls -s: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Target:"+discIQN) || !strings.Contains(out, "Portal:"+s.Portal()) {
		t.Errorf("iscsi-ls does not list target %s at portal %s:\n%s", discIQN, s.Portal(), out)
	}
	lunLine := fmt.Sprintf("Lun:%d", s.LUN())
	found := false
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, lunLine) && strings.Contains(l, "DIRECT_ACCESS") && strings.Contains(l, "Size:") {
			found = true
		}
	}
	if !found {
		t.Errorf("iscsi-ls -s does not show LUN %d as a sized DIRECT_ACCESS device:\n%s", s.LUN(), out)
	}

	url := lunURL(s, discIQN, nil)
	out, err = inquiry(initiator1, url)
	if err != nil {
		t.Fatalf("iscsi-inq standard: %v\n%s", err, out)
	}
	for _, want := range []string{"Peripheral Device Type:DIRECT_ACCESS", "Vendor:", "Product:", "CmdQue:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("standard INQUIRY lacks %q:\n%s", want, out)
		}
	}

	// Supported VPD pages, then every page it lists must be readable too.
	out, err = inquiry(initiator1, url, "-e", "1", "-c", "0")
	if err != nil {
		t.Fatalf("iscsi-inq VPD 0x00: %v\n%s", err, out)
	}
	// iscsi-inq takes the page code in decimal and lists pages as
	// "Page:0x80 UNIT_SERIAL_NUMBER".
	for _, want := range []string{"Page:0x80", "Page:0x83"} {
		if !strings.Contains(out, want) {
			t.Errorf("supported VPD pages lack %s:\n%s", want, out)
		}
	}
	for _, pc := range []struct {
		hex, dec, want string
	}{
		{"0x80", "128", "Unit Serial Number:"},
		{"0x83", "131", "Designator"},
		{"0xb0", "176", ""},
		{"0xb1", "177", ""},
		{"0xb2", "178", ""},
	} {
		if !strings.Contains(out, "Page:"+pc.hex) {
			continue
		}
		page, err := inquiry(initiator1, url, "-e", "1", "-c", pc.dec)
		if err != nil {
			t.Errorf("VPD page %s is listed as supported but cannot be read: %v\n%s", pc.hex, err, page)
			continue
		}
		t.Logf("VPD %s:\n%s", pc.hex, page)
		if pc.hex == "0x83" && s.Kind() == "rbdgw" && !strings.Contains(page, "Designator Type:(3) NAA") {
			t.Errorf("VPD page 0x83 lacks an NAA designator (design.md: NAA type 6 from the disk WWN):\n%s", page)
		}
		if !strings.Contains(page, pc.want) {
			t.Errorf("VPD page %s lacks %q:\n%s", pc.hex, pc.want, page)
		}
	}
}

// CHAP credentials obeying ceph-iscsi's rules (user 8-64, secret 12-16).
var (
	chapGood   = &chap{User: "rbdgwuser1", Pass: "Secret-0123456"}
	chapMutual = &chap{User: "rbdgwuser2", Pass: "Secret-6543210", MutualUser: "rbdgwtarget", MutualPass: "TgtSecret-0123"}
	chapHost   = &chap{User: "hostuser01", Pass: "HostSecret-012"}
	chapDisc   = &chap{User: "discuser01", Pass: "DiscSecret-012"}
)

const (
	chapIQN   = "iqn.2026-01.io.rbdgw.test:chap"
	mutualIQN = "iqn.2026-01.io.rbdgw.test:mutual"
	aclIQN    = "iqn.2026-01.io.rbdgw.test:acl"
	strangerI = "iqn.2026-01.io.rbdgw.test:stranger"
)

// TestCHAP checks one-way, mutual and per-host CHAP, the initiator ACL and
// discovery CHAP: right credentials log in, anything else is refused.
func TestCHAP(t *testing.T) {
	needTools(t, "iscsi-ls", "iscsi-inq")
	kind := e2eTarget()
	spec := serverSpec{
		Targets: []targetDef{
			{IQN: chapIQN, Size: lunSize, Auth: chapGood},
			{IQN: mutualIQN, Size: lunSize, Auth: chapMutual},
			{IQN: aclIQN, Size: lunSize, Hosts: []hostACL{{IQN: initiator1, Auth: chapHost, LUNs: []uint64{0}}}},
		},
	}
	if kind == "rbdgw" {
		spec.DiscoveryAuth = chapDisc
	}
	s := startServer(t, kind, spec)

	wrong := func(c *chap) *chap { w := *c; w.Pass = "Wrong-" + c.Pass[6:]; return &w }
	wrongMutual := func(c *chap) *chap { w := *c; w.MutualPass = "Wrong-" + c.MutualPass[6:]; return &w }
	noMutual := func(c *chap) *chap { w := *c; w.MutualUser, w.MutualPass = "", ""; return &w }

	cases := []struct {
		name      string
		initiator string
		iqn       string
		auth      *chap
		ok        bool
	}{
		{"one-way right secret", initiator1, chapIQN, chapGood, true},
		{"one-way wrong secret", initiator1, chapIQN, wrong(chapGood), false},
		{"one-way wrong user", initiator1, chapIQN, &chap{User: "rbdgwuserX", Pass: chapGood.Pass}, false},
		{"one-way missing secret", initiator1, chapIQN, nil, false},
		{"mutual right secrets", initiator1, mutualIQN, chapMutual, true},
		{"mutual without asking the target", initiator1, mutualIQN, noMutual(chapMutual), true},
		{"mutual wrong initiator secret", initiator1, mutualIQN, wrong(chapMutual), false},
		{"mutual wrong target secret", initiator1, mutualIQN, wrongMutual(chapMutual), false},
		{"acl host with its secret", initiator1, aclIQN, chapHost, true},
		{"acl host without secret", initiator1, aclIQN, nil, false},
		{"acl host with the wrong secret", initiator1, aclIQN, wrong(chapHost), false},
		{"acl unknown initiator", strangerI, aclIQN, chapHost, false},
		{"acl unknown initiator without secret", strangerI, aclIQN, nil, false},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			out, err := inquiry(c.initiator, lunURL(s, c.iqn, c.auth))
			if c.ok && err != nil {
				t.Errorf("login refused, want accepted: %v\n%s", err, out)
			}
			if !c.ok && err == nil {
				t.Errorf("login accepted, want refused:\n%s", out)
			}
			if strings.Contains(err2str(err), "timed out") {
				t.Errorf("the target did not answer the login: %v", err)
			}
		})
	}

	t.Run("discovery", func(t *testing.T) {
		if spec.DiscoveryAuth == nil {
			t.Skipf("%s: discovery CHAP not set up for this target", kind)
		}
		out, err := run(20*time.Second, "iscsi-ls", "-i", initiator1, portalURL(s, chapDisc))
		if err != nil || !strings.Contains(out, chapIQN) {
			t.Errorf("discovery with the right secret: %v\n%s", err, out)
		}
		for _, bad := range []*chap{nil, wrong(chapDisc)} {
			out, err := run(20*time.Second, "iscsi-ls", "-i", initiator1, portalURL(s, bad))
			if err == nil && strings.Contains(out, "Target:") {
				t.Errorf("discovery with credentials %+v listed targets, want refused:\n%s", bad, out)
			}
		}
	})

	// No failed login may have hurt the daemon.
	if out, err := inquiry(initiator1, lunURL(s, chapIQN, chapGood)); err != nil {
		t.Fatalf("after the refused logins the target no longer answers: %v\n%s", err, out)
	}
}

func err2str(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
