package scsi

import "errors"

// prCommitAttempts bounds the rounds of a PERSISTENT RESERVE OUT that lost
// the store's compare-and-swap to another gateway's commit: each round
// reloads the committed state and decides the command again on it.
const prCommitAttempts = 3

// commitPROut runs the reservation state machine on the committed state
// and, if the state changes, commits it with the store's compare-and-swap
// before the command may answer GOOD (PRStore contract). Called with
// extras.prMu held.
func (lu *LogicalUnit) commitPROut(req *PROutRequest) (*PROutResult, error) {
	x := &lu.extras
	for attempt := 1; ; attempt++ {
		cur := x.pr.Load()
		res, err := ApplyPROut(cur, req)
		if err != nil || !res.Changed {
			return res, err
		}
		res.State.Version = cur.Version + 1
		err = x.prStore.Save(x.prKey, res.State)
		if err == nil {
			x.pr.Store(res.State)
			return res, nil
		}
		if !errors.Is(err, ErrPRStale) || attempt == prCommitAttempts {
			return nil, prCommitFailed(req.CDB.ServiceAction)
		}
		// Another gateway committed since our copy was loaded: adopt
		// its state and decide again, as if the command had arrived after.
		fresh, lerr := x.prStore.Load(x.prKey)
		if lerr != nil {
			return nil, prCommitFailed(req.CDB.ServiceAction)
		}
		if fresh == nil {
			fresh = &PRState{}
		}
		x.pr.Store(fresh)
	}
}

// prCommitFailed is the answer to a PR OUT whose state could not be
// committed: the old state stays in force.
func prCommitFailed(sa byte) error {
	switch sa {
	case prOutRegister, prOutRegisterIgnore, prOutRegisterAndMove:
		// SPC-4 5.13.7: INSUFFICIENT REGISTRATION RESOURCES.
		return newCC(SenseIllegalRequest, 0x55, 0x04)
	}
	// A store outage or lost race is transient: ABORTED COMMAND invites a
	// retry.
	return newCC(SenseAbortedCommand, 0x00, 0x00)
}
