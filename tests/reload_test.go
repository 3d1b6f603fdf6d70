package tests

import (
	"strings"
	"testing"
	"time"
)

const (
	reloadA = "iqn.2026-01.io.rbdgw.test:reload-a"
	reloadB = "iqn.2026-01.io.rbdgw.test:reload-b"
)

// TestReloadOnSIGHUP adds a target and a LUN to the configuration of a
// running daemon and sends SIGHUP: both must be served within a second
// (design.md: adding a LUN applies in well under a second), without
// disturbing the existing session's target.
func TestReloadOnSIGHUP(t *testing.T) {
	needTools(t, "iscsi-ls", "iscsi-inq")
	if e2eTarget() != "rbdgw" {
		t.Skip("configuration reload is an rbdgw feature")
	}
	spec := serverSpec{Targets: []targetDef{{IQN: reloadA, Size: lunSize}}}
	srv := startServer(t, "rbdgw", spec)
	s := srv.(*rbdgwServer)
	if out, err := inquiry(initiator1, lunURL(s, reloadA, nil)); err != nil {
		t.Fatalf("before reload: %v\n%s", err, out)
	}

	spec.Targets[0].ExtraLUNs = 1
	spec.Targets = append(spec.Targets, targetDef{IQN: reloadB, Size: lunSize})
	start := time.Now()
	if err := s.Reload(spec); err != nil {
		t.Fatal(err)
	}
	var out string
	for {
		var err error
		out, err = run(10*time.Second, "iscsi-ls", "-i", initiator1, "-s", portalURL(s, nil))
		if err == nil && strings.Contains(out, "Target:"+reloadB) && strings.Count(out, "DIRECT_ACCESS") == 3 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("5s after SIGHUP the new target and LUN are not listed (err %v):\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("new target and LUN listed %v after SIGHUP", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("reload took %v, want under a second", took)
	}
	if out, err := inquiry(initiator1, lunURL(s, reloadB, nil)); err != nil {
		t.Errorf("new target %s: %v\n%s", reloadB, err, out)
	}
	if out, err := inquiry(initiator1, "iscsi://"+s.Portal()+"/"+reloadA+"/1"); err != nil {
		t.Errorf("new LUN 1 of %s: %v\n%s", reloadA, err, out)
	}
	if exited, err := s.Exited(); exited {
		t.Fatalf("rbdgw exited on SIGHUP: %v", err)
	}
}

// TestReloadTellsLoggedInSessions: a session logged in before a reload
// that adds a LUN to its target is told (REPORTED LUNS DATA HAS CHANGED,
// 06/3F/0E) and finds the new LUN in REPORT LUNS without logging in again.
func TestReloadTellsLoggedInSessions(t *testing.T) {
	if e2eTarget() != "rbdgw" {
		t.Skip("configuration reload is an rbdgw feature")
	}
	spec := serverSpec{Targets: []targetDef{{IQN: reloadA, Size: lunSize}}}
	srv := startServer(t, "rbdgw", spec)
	s := srv.(*rbdgwServer)
	sess, err := dialRaw(s.Portal(), initiator1, reloadA, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Ready(); err != nil {
		t.Fatal(err)
	}
	if luns, err := sess.ReportLUNs(); err != nil || len(luns) != 1 {
		t.Fatalf("before the reload: LUNs %v, %v", luns, err)
	}
	spec.Targets[0].ExtraLUNs = 1
	start := time.Now()
	if err := s.Reload(spec); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := sess.Do([]byte{0, 0, 0, 0, 0, 0}, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == 0x02 && r.SenseKey() == "06/3f/0e" {
			t.Logf("REPORTED LUNS DATA HAS CHANGED %v after the reload", time.Since(start).Round(time.Millisecond))
			break
		}
		if r.Status != 0 {
			t.Fatalf("TEST UNIT READY after the reload: %s", r)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("no REPORTED LUNS DATA HAS CHANGED within 5 s of the reload")
		}
		time.Sleep(20 * time.Millisecond)
	}
	luns, err := sess.ReportLUNs()
	if err != nil || len(luns) != 2 {
		t.Fatalf("after the reload the logged-in session sees LUNs %v, %v; want 2", luns, err)
	}
}
