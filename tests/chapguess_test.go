package tests

import (
	"testing"
	"time"
)

const chapGuessIQN = "iqn.2026-01.io.rbdgw.test:chapguess"

// Issue 8, attack 8: one client tried 1,793 wrong CHAP passwords a second
// against the daemon. Now each refusal of an initiator name at an address
// waits longer than the one before (0.5 s doubling, rbdgw serve
// --chap-failure-delay), while another initiator with its own right
// secret logs in from the same address without waiting.
func TestCHAPGuessingSlowed(t *testing.T) {
	if e2eTarget() != "rbdgw" {
		t.Skip("rbdgw's own delay")
	}
	needTools(t, "iscsi-inq")
	guessed := &chap{User: "guesseduser", Pass: "Guessed-secret1"}
	other := &chap{User: "otheruser1", Pass: "Other-secret01"}
	s := startServer(t, "rbdgw", serverSpec{Targets: []targetDef{{IQN: chapGuessIQN, Size: 1 << 20, Hosts: []hostACL{
		{IQN: initiator1, Auth: guessed, LUNs: []uint64{0}},
		{IQN: initiator2, Auth: other, LUNs: []uint64{0}},
	}}}})
	wrong := &chap{User: guessed.User, Pass: "Wrong-password1"}
	for k, min := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second} {
		start := time.Now()
		out, err := inquiry(initiator1, lunURL(s, chapGuessIQN, wrong))
		took := time.Since(start)
		if err == nil {
			t.Fatalf("guess %d accepted:\n%s", k+1, out)
		}
		if took < min {
			t.Fatalf("guess %d refused after %v, want at least %v", k+1, took, min)
		}
		t.Logf("guess %d refused after %v", k+1, took.Round(time.Millisecond))
	}
	start := time.Now()
	if out, err := inquiry(initiator2, lunURL(s, chapGuessIQN, other)); err != nil {
		t.Fatalf("the other initiator's right secret: %v\n%s", err, out)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the other initiator waited %v", took)
	}
}
