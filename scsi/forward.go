package scsi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rbdgw/rbdgw/alua"
)

// Forwarder carries a command to the gateway that owns the LU and returns
// the owner's response. SPC-4 5.16.2.4.3 has an Active/Non-optimized port
// process every command an Active/Optimized one does, only more slowly:
// a gateway that does not own the LU (whose media only the owner may
// touch) meets that by executing the command at the owner.
//
// Forward fills cmd.DataIn with the owner's Data-In and returns the owner's
// response (Response.DataLen counts the bytes filled). An error means the
// command did not reach the owner or its answer was lost: the device server
// answers NOT READY, ASYMMETRIC ACCESS STATE TRANSITION and the initiator
// retries. Forward must not return before the owner has finished with the
// command, even when ctx ends (an aborted command has no effect after its
// abort completes, SAM-5 5.6).
type Forwarder interface {
	Forward(ctx context.Context, cmd *Command) (Response, error)
}

// ErrCutOff is returned (wrapped) by a Forwarder when this gateway itself
// is cut off from the cluster (its lease is not valid): waiting for a move
// to settle makes no sense, the initiator should use another path now.
var ErrCutOff = errors.New("scsi: this gateway is cut off from the LU's cluster")

// forwardedResponse carries the owner's whole response through run's error
// path to finish.
type forwardedResponse struct{ resp Response }

func (f *forwardedResponse) Error() string {
	return fmt.Sprintf("scsi: forwarded command answered with status %#02x", f.resp.Status)
}

// moveHold bounds how long a command that needs the owner waits for an
// ownership move to settle (the owner dying and being replaced, or a
// graceful handoff) before it is answered NOT READY, ASYMMETRIC ACCESS
// STATE TRANSITION. Within it the move is invisible to the initiator,
// which matters to those that do not retry 04/0A (qemu's iSCSI driver);
// it stays well under the command timeouts of ESXi (8 s heartbeat) and
// Linux (30 s).
var moveHold = 5 * time.Second

// moveRetry spaces the attempts while a move settles.
const moveRetry = 25 * time.Millisecond

// forward executes r at the owner through the LU's Forwarder. While no
// owner can take it (none reachable, or the owner answers that the LU is
// moving) it tries again, for at most moveHold: as soon as this gateway
// owns the LU the command runs here, or goes to the new owner.
func (lu *LogicalUnit) forward(r *request) error {
	deadline := time.Now().Add(moveHold)
	for {
		resp, err := lu.cfg.Forwarder.Forward(r.ctx, r.cmd)
		switch {
		case err == nil && !isTransitioning(resp):
			return lu.forwarded(r, resp)
		case errors.Is(err, ErrCutOff), !time.Now().Before(deadline):
			return errMoving()
		}
		// A refusal at admission left the owner's medium untouched; a
		// lost link may have run it, which a retry repeats as the
		// initiator's own retry would.
		select {
		case <-r.ctx.Done():
			return errMoving()
		case <-time.After(moveRetry):
		}
		if st := lu.admission(r); st != alua.Transitioning {
			// The LU came here (or the port's state changed): run or
			// refuse the command as this gateway now says.
			return aluaRefusal(st, r.entry.Flags)
		}
	}
}

// isTransitioning reports an answer of NOT READY, ASYMMETRIC ACCESS STATE
// TRANSITION: the owner was releasing the LU and did not run the command.
func isTransitioning(resp Response) bool {
	if resp.Status != StatusCheckCondition {
		return false
	}
	key, asc, ascq, ok := senseCodes(resp.Sense)
	return ok && key == SenseNotReady && asc == 0x04 && ascq == 0x0A
}

// forwarded completes r with the owner's response.
func (lu *LogicalUnit) forwarded(r *request, resp Response) error {
	if resp.DataLen > len(r.cmd.DataIn) {
		return newCC(SenseHardwareError, 0x44, 0x00)
	}
	if r.entry.Flags&opOwner != 0 && resp.Status == StatusGood {
		// The owner committed new reservations: answer only once this
		// gateway's copy has them too, so that PERSISTENT RESERVE IN on
		// this path right after sees the change (the store's watch would
		// bring it a moment later).
		_ = lu.ReloadPR()
	}
	return &forwardedResponse{resp: resp}
}

// ExecuteForwarded runs a command another gateway forwarded to this one,
// the LU's owner, on behalf of the I_T nexus cmd.Nexus (the nexus as the
// forwarding gateway sees it, so reservations apply to the right
// initiator). Unit attentions are left to the forwarding gateway, which
// reported them before forwarding; the ownership gate still applies, so a
// gateway that no longer owns the LU answers NOT READY, ASYMMETRIC ACCESS
// STATE TRANSITION instead of touching the image.
func (lu *LogicalUnit) ExecuteForwarded(ctx context.Context, cmd *Command) Response {
	if cmd.Nexus == nil {
		cc := newCC(SenseIllegalRequest, 0x24, 0x00)
		return Response{Status: StatusCheckCondition, Sense: cc.Sense(lu.descSense())}
	}
	ctx = context.WithValue(ctx, forwardedKey{}, true)
	return lu.executeRequest(&request{ctx: ctx, lu: lu, cmd: cmd, nexus: cmd.Nexus})
}

type forwardedKey struct{}

// IsForwarded reports whether ctx is that of a command another gateway
// forwarded (ExecuteForwarded): such a command is never forwarded again,
// and for the ownership admission it is neither this gateway's own I/O
// nor demand for the LU here.
func IsForwarded(ctx context.Context) bool {
	v, _ := ctx.Value(forwardedKey{}).(bool)
	return v
}

// Forwarded nexuses idle this long are forgotten; they are swept at most
// once per forwardedSweepEvery.
const (
	forwardedNexusIdle  = 10 * time.Minute
	forwardedSweepEvery = time.Minute
)

// forwardedNexusLocked returns the state of a nexus another gateway
// forwards commands for, and forgets the forwarded nexuses that have been
// idle a long time. Called with lu.mu held.
func (lu *LogicalUnit) forwardedNexusLocked(n *Nexus) *nexusState {
	now := time.Now()
	if now.Sub(lu.lastSweep) >= forwardedSweepEvery {
		lu.lastSweep = now
		for k, st := range lu.nexuses {
			if st.forwarded && now.Sub(st.lastUse) >= forwardedNexusIdle &&
				st.tasks.running[0].Load() == 0 && st.tasks.running[1].Load() == 0 {
				delete(lu.nexuses, k)
			}
		}
	}
	st := lu.nexusLocked(n)
	st.forwarded, st.lastUse = true, now
	return st
}

// senseCodes returns the sense key, ASC and ASCQ of fixed or descriptor
// format sense data.
func senseCodes(s []byte) (key, asc, ascq byte, ok bool) {
	switch {
	case len(s) >= 14 && (s[0]&0x7F == 0x70 || s[0]&0x7F == 0x71):
		return s[2] & 0x0F, s[12], s[13], true
	case len(s) >= 4 && (s[0]&0x7F == 0x72 || s[0]&0x7F == 0x73):
		return s[1] & 0x0F, s[2], s[3], true
	}
	return 0, 0, 0, false
}
