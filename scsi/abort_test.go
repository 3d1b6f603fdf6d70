package scsi_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

// holdWrites makes the backend hold every write until release is closed,
// and reports each held write on started.
func holdWrites(be *scsitest.MemBackend) (started chan struct{}, release chan struct{}) {
	started, release = make(chan struct{}, 8), make(chan struct{})
	be.SetHook(func(ctx context.Context, op scsitest.Op, _, _ int64) error {
		if op == scsitest.OpWrite {
			started <- struct{}{}
			<-release
		}
		return nil
	})
	return started, release
}

// inFlightWrite starts WRITE(10) of one block at lba from n and returns
// its response channel once the backend holds it.
func inFlightWrite(t *testing.T, lu *scsi.LogicalUnit, n *scsi.Nexus, lba uint32, started chan struct{}) chan scsi.Response {
	t.Helper()
	done := make(chan scsi.Response, 1)
	go func() { done <- write10(lu, n, lba, bytes.Repeat([]byte{0xB}, 512)) }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("write did not reach the backend")
	}
	return done
}

// finishesAfterRelease checks that f does not complete while the backend
// holds a write, and completes once it is released.
func finishesAfterRelease(t *testing.T, f func() scsi.Response, release chan struct{}) scsi.Response {
	t.Helper()
	res := make(chan scsi.Response, 1)
	go func() { res <- f() }()
	select {
	case r := <-res:
		t.Fatalf("completed (%s) while an aborted task was still in the backend", sense(r))
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case r := <-res:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("did not complete after the aborted task left the backend")
	}
	return scsi.Response{}
}

// SAM-5 6.6: LOGICAL UNIT RESET aborts the tasks of every nexus; with
// TAS=1 another nexus's aborted task ends in TASK ABORTED, and the reset
// completes only once that task has left the device server.
func TestLUResetAbortsOtherNexusTasks(t *testing.T) {
	lu, be := newMemLU(t, 64)
	hello(t, lu, iA, iB)
	rt := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: lu})
	started, release := holdWrites(be)
	bDone := inFlightWrite(t, lu, iB, 8, started)

	finishesAfterRelease(t, func() scsi.Response {
		if r := rt.TaskManagement(iA, scsi.TMFLogicalUnitReset, 0); r != scsi.TMFComplete {
			t.Errorf("LU reset: %v", r)
		}
		return scsi.Response{}
	}, release)
	if r := <-bDone; r.Status != scsi.StatusTaskAborted {
		t.Fatalf("B's write during A's LU reset: %s, want TASK ABORTED", sense(r))
	}
	// Commands after the reset run normally (after the reset's UA).
	be.SetHook(nil)
	want(t, write10(lu, iB, 8, make([]byte, 512)), "6/29/03")
	want(t, write10(lu, iB, 8, make([]byte, 512)), "GOOD")
}

// SPC-4 5.13.11.2.5: PREEMPT AND ABORT aborts the preempted registrant's
// tasks before it completes; other nexuses' tasks are untouched.
func TestPreemptAndAbortAbortsPreemptedTasks(t *testing.T) {
	lu, be := newMemLU(t, 64)
	hello(t, lu, iA, iB, iC)
	want(t, prOut(lu, iA, 0x06, 0, 0, 0xA), "GOOD")
	want(t, prOut(lu, iB, 0x06, 0, 0, 0xB), "GOOD")
	want(t, prOut(lu, iC, 0x06, 0, 0, 0xC), "GOOD")
	want(t, prOut(lu, iB, 0x01, scsi.PRTypeWriteExclusiveAR, 0xB, 0), "GOOD")

	started, release := holdWrites(be)
	bDone := inFlightWrite(t, lu, iB, 8, started)
	cDone := inFlightWrite(t, lu, iC, 24, started) // another registrant: not preempted

	r := finishesAfterRelease(t, func() scsi.Response {
		return prOut(lu, iA, 0x05, scsi.PRTypeWriteExclusive, 0xA, 0xB)
	}, release)
	want(t, r, "GOOD")
	if r := <-bDone; r.Status != scsi.StatusTaskAborted {
		t.Fatalf("preempted B's write: %s, want TASK ABORTED", sense(r))
	}
	if r := <-cDone; r.Status != scsi.StatusGood {
		t.Fatalf("C's write (not preempted): %s, want GOOD", sense(r))
	}
	// Plain PREEMPT (0x04) aborts nothing.
	be.SetHook(nil)
	hello(t, lu, iB) // the preemption's unit attentions
	want(t, prOut(lu, iB, 0x06, 0, 0, 0xB2), "GOOD")
	started, release = holdWrites(be)
	bDone = inFlightWrite(t, lu, iB, 16, started)
	want(t, prOut(lu, iA, 0x04, scsi.PRTypeWriteExclusive, 0xA, 0xB2), "GOOD")
	close(release)
	if r := <-bDone; r.Status == scsi.StatusTaskAborted {
		t.Fatal("PREEMPT without ABORT aborted B's task")
	}
}
