package scsi_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

// directForwarder hands commands to the owner's LU in the same process, as
// the peer link does across gateways.
type directForwarder struct {
	owner *scsi.LogicalUnit
	err   error // when set, the owner is out of reach
	calls int
}

func (f *directForwarder) Forward(ctx context.Context, cmd *scsi.Command) (scsi.Response, error) {
	f.calls++
	if f.err != nil {
		return scsi.Response{}, f.err
	}
	// The owner gets its own copies, as over the wire.
	c := *cmd
	c.DataOut = bytes.Clone(cmd.DataOut)
	c.DataIn = make([]byte, len(cmd.DataIn))
	resp := f.owner.ExecuteForwarded(ctx, &c)
	copy(cmd.DataIn, c.DataIn[:resp.DataLen])
	return resp, nil
}

// gatedGroups are two port groups (1: this gateway, 2: the other) whose
// media admission answers admit.
func gatedGroups(t *testing.T, admit alua.AccessState) *alua.Dynamic {
	t.Helper()
	d, err := alua.NewDynamic([]alua.Group{
		{ID: 1, State: alua.ActiveNonOptimized, RelativePorts: []uint16{1}},
		{ID: 2, State: alua.ActiveOptimized, RelativePorts: []uint16{2}},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	d.SetAdmitAccess(func(context.Context, uint16, alua.Access) alua.AccessState { return admit })
	return d
}

// forwardPair is a non-owner LU copy that forwards to an owner copy with
// its own backend; the non-owner's backend must never be touched.
func forwardPair(t *testing.T, ownerServes bool) (nonOwner, owner *scsi.LogicalUnit, fwd *directForwarder, ownerBE, localBE *scsitest.MemBackend) {
	t.Helper()
	ownerBE = scsitest.NewMemBackend(testBlocks * 512)
	localBE = scsitest.NewMemBackend(testBlocks * 512)
	ownerAdmit := alua.ActiveOptimized
	if !ownerServes {
		ownerAdmit = alua.Transitioning
	}
	owner = newLU(t, ownerBE, func(c *scsi.LUConfig) { c.ALUA = gatedGroups(t, ownerAdmit) })
	fwd = &directForwarder{owner: owner}
	nonOwner = newLU(t, localBE, func(c *scsi.LUConfig) {
		c.ALUA = gatedGroups(t, alua.Transitioning)
		c.Forwarder = fwd
	})
	hello(t, nonOwner, iA, iB)
	hello(t, owner, iA, iB)
	return nonOwner, owner, fwd, ownerBE, localBE
}

func TestForwardedWriteAndReadRunAtTheOwner(t *testing.T) {
	nonOwner, _, fwd, ownerBE, localBE := forwardPair(t, true)
	data := bytes.Repeat([]byte{0x5a}, 8*512)
	want(t, write10(nonOwner, iA, 100, data), "GOOD")
	got, r := read10(nonOwner, iA, 100, 8)
	want(t, r, "GOOD")
	if !bytes.Equal(got, data) {
		t.Fatal("the forwarded read did not return the forwarded write")
	}
	if fwd.calls != 2 {
		t.Fatalf("%d commands forwarded, want 2", fwd.calls)
	}
	if ownerBE.Count(scsitest.OpWrite) == 0 || localBE.Count(scsitest.OpWrite)+localBE.Count(scsitest.OpRead) != 0 {
		t.Fatalf("owner backend writes %d; non-owner backend reads+writes %d, want 0",
			ownerBE.Count(scsitest.OpWrite), localBE.Count(scsitest.OpWrite)+localBE.Count(scsitest.OpRead))
	}
	// Not owner-gated: answered here, not forwarded.
	want(t, do(nonOwner, iA, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 8), "GOOD")
	if fwd.calls != 2 {
		t.Fatalf("READ CAPACITY was forwarded")
	}
}

func TestForwardedCompareAndWriteMiscompares(t *testing.T) {
	nonOwner, _, _, _, _ := forwardPair(t, true)
	want(t, write10(nonOwner, iA, 7, bytes.Repeat([]byte{1}, 512)), "GOOD")
	caw := func(cmp, data byte) scsi.Response {
		c := make([]byte, 16)
		c[0], c[13] = 0x89, 1
		c[9] = 7 // LBA
		out := append(bytes.Repeat([]byte{cmp}, 512), bytes.Repeat([]byte{data}, 512)...)
		return do(nonOwner, iA, c, out, 0)
	}
	want(t, caw(2, 3), "E/1D/00")
	want(t, caw(1, 3), "GOOD")
	got, r := read10(nonOwner, iB, 7, 1)
	want(t, r, "GOOD")
	if got[0] != 3 {
		t.Fatalf("block holds %#x after the compare-and-write, want 3", got[0])
	}
}

func TestForwardedCommandsMeetTheOwnersReservation(t *testing.T) {
	nonOwner, owner, _, _, _ := forwardPair(t, true)
	want(t, prOut(owner, iA, 0x00, 0, 0, 0xaa), "GOOD") // REGISTER
	want(t, prOut(owner, iA, 0x01, 1, 0xaa, 0), "GOOD") // RESERVE, Write Exclusive
	want(t, write10(nonOwner, iB, 0, make([]byte, 512)), "CONFLICT")
	want(t, write10(nonOwner, iA, 0, make([]byte, 512)), "GOOD")
}

func TestForwardingFailuresAnswerTransitioning(t *testing.T) {
	defer scsi.SetMoveHold(200 * time.Millisecond)()
	nonOwner, _, fwd, _, _ := forwardPair(t, false)
	// The owner copy does not serve (it lost the LU meanwhile).
	want(t, write10(nonOwner, iA, 0, make([]byte, 512)), "2/04/0A")
	// The owner is out of reach.
	fwd.err = errors.New("no route to the owner")
	want(t, write10(nonOwner, iA, 0, make([]byte, 512)), "2/04/0A")
}

// flakyForwarder answers like an owner that is handing the LU over: NOT
// READY, ASYMMETRIC ACCESS STATE TRANSITION for the first refusals
// commands, then as the owner.
type flakyForwarder struct {
	directForwarder
	refusals atomic.Int32
}

func (f *flakyForwarder) Forward(ctx context.Context, cmd *scsi.Command) (scsi.Response, error) {
	if f.refusals.Add(-1) >= 0 {
		return scsi.Response{Status: scsi.StatusCheckCondition,
			Sense: []byte{0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x04, 0x0A, 0, 0, 0, 0}}, nil
	}
	return f.directForwarder.Forward(ctx, cmd)
}

// A move in progress is not the initiator's business: the command waits
// for it (within the hold) and then runs at the new owner, or here once
// the LU has come here.
func TestForwardedCommandsWaitOutAMove(t *testing.T) {
	ownerBE := scsitest.NewMemBackend(testBlocks * 512)
	owner := newLU(t, ownerBE, func(c *scsi.LUConfig) { c.ALUA = gatedGroups(t, alua.ActiveOptimized) })
	fwd := &flakyForwarder{directForwarder: directForwarder{owner: owner}}
	fwd.refusals.Store(3)
	var ours atomic.Bool
	groups := gatedGroups(t, alua.Transitioning)
	groups.SetAdmitAccess(func(context.Context, uint16, alua.Access) alua.AccessState {
		if ours.Load() {
			return alua.ActiveOptimized
		}
		return alua.Transitioning
	})
	localBE := scsitest.NewMemBackend(testBlocks * 512)
	nonOwner := newLU(t, localBE, func(c *scsi.LUConfig) { c.ALUA = groups; c.Forwarder = fwd })
	hello(t, nonOwner, iA)

	// The owner refuses three times while it releases, then takes it.
	want(t, write10(nonOwner, iA, 0, make([]byte, 512)), "GOOD")
	if ownerBE.Count(scsitest.OpWrite) != 1 || fwd.calls != 1 {
		t.Fatalf("owner writes %d, commands it ran %d; want 1 and 1", ownerBE.Count(scsitest.OpWrite), fwd.calls)
	}
	// The LU moves here while the owner still refuses: the command runs
	// here.
	fwd.refusals.Store(1 << 20)
	go func() { time.Sleep(100 * time.Millisecond); ours.Store(true) }()
	want(t, write10(nonOwner, iA, 1, make([]byte, 512)), "GOOD")
	if localBE.Count(scsitest.OpWrite) != 1 {
		t.Fatalf("local writes %d after the LU came here, want 1", localBE.Count(scsitest.OpWrite))
	}
}
