package scsi

import (
	"context"
	"fmt"
	"time"
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

// forwardedResponse carries the owner's whole response through run's error
// path to finish.
type forwardedResponse struct{ resp Response }

func (f *forwardedResponse) Error() string {
	return fmt.Sprintf("scsi: forwarded command answered with status %#02x", f.resp.Status)
}

// forward executes r at the owner through the LU's Forwarder.
func (lu *LogicalUnit) forward(r *request) error {
	resp, err := lu.cfg.Forwarder.Forward(r.ctx, r.cmd)
	if err != nil {
		// The owner is out of reach or moving: as during an ownership move.
		return newCC(SenseNotReady, 0x04, 0x0A)
	}
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
	return lu.executeRequest(&request{ctx: ctx, lu: lu, cmd: cmd, nexus: cmd.Nexus, forwarded: true})
}

type forwardedKey struct{}

// IsForwarded reports whether ctx is that of a command another gateway
// forwarded (ExecuteForwarded). The ownership admission uses it: such a
// command is not this gateway's own I/O, nor demand for the LU here.
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
