package scsi

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Aborting the tasks of other I_T nexuses.
//
// The transport aborts the tasks of the nexus that asks for a LOGICAL UNIT
// RESET or a target reset; the device server must also abort those of
// every other nexus (SAM-5 6.6, 6.7), and PERSISTENT RESERVE OUT PREEMPT AND
// ABORT those of the preempted registrants (SPC-4 5.13.11.2.5), before the
// function or command completes. The control mode page advertises TAS=1, so
// an aborted task of another nexus ends with TASK ABORTED status rather
// than silently (SAM-5 5.6).
//
// A nexus's commands are counted by abort generation: a command joins the
// generation current when it enters the device server (under lu.mu, which
// also guards the bump), and an abort bumps the generation and waits until
// the old one has drained. A command whose generation changed while it ran
// reports TASK ABORTED whatever the backend answered; commands arriving
// after the bump run normally. Backend operations already issued are not
// cancelled (their contexts belong to their own transport connection), so
// waiting for the drain is what guarantees that no aborted write lands
// after the abort completes.

// abortDrainTimeout bounds the wait for aborted tasks: a backend that
// never answers (a dead OSD) must not hang the reset forever. ESXi retries
// a LUN reset after about 30 s, so the wait gives up before that.
const abortDrainTimeout = 25 * time.Second

// taskCounter is a nexusState's count of commands in the device server.
type taskCounter struct {
	gen     atomic.Uint64   // bumped (under lu.mu) by each abort
	running [2]atomic.Int64 // commands in flight, by generation parity
}

// enter registers a command of the current generation; it is called with
// lu.mu held, so it cannot straddle a bump.
func (tc *taskCounter) enter() uint64 {
	g := tc.gen.Load()
	tc.running[g&1].Add(1)
	return g
}

// leave unregisters a command and reports whether it was aborted while it
// ran.
func (tc *taskCounter) leave(g uint64) (aborted bool) {
	tc.running[g&1].Add(-1)
	return tc.gen.Load() != g
}

// bumped is one nexus's counter and the generation an abort ended.
type bumped struct {
	tc  *taskCounter
	gen uint64 // the generation that was aborted
}

// abortNexusTasks aborts the in-flight commands of every nexus for which
// match is true and waits until they have left the device server (at most
// abortDrainTimeout). It returns false when the wait timed out.
func (lu *LogicalUnit) abortNexusTasks(match func(key string) bool) bool {
	// Serialized, so a generation's parity counter is drained before the
	// next bump reuses it.
	lu.aborting.Lock()
	defer lu.aborting.Unlock()
	var bs []bumped
	lu.mu.Lock()
	for k, st := range lu.nexuses {
		if match(k) {
			g := st.tasks.gen.Load()
			st.tasks.gen.Store(g + 1)
			bs = append(bs, bumped{&st.tasks, g})
		}
	}
	lu.mu.Unlock()
	deadline := time.Now().Add(abortDrainTimeout)
	for _, b := range bs {
		for b.tc.running[b.gen&1].Load() > 0 {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(time.Millisecond)
		}
	}
	return true
}

// abortOtherNexuses aborts the tasks of every nexus but n (LOGICAL UNIT
// RESET and target resets: the transport aborts n's own).
func (lu *LogicalUnit) abortOtherNexuses(n *Nexus) bool {
	own := nexusKey(n)
	return lu.abortNexusTasks(func(k string) bool { return k != own })
}

// abortPreempted aborts the tasks of the nexuses that the registrations
// PREEMPT AND ABORT removed cover, except the preempting nexus itself
// (its own tasks are not in the preempted set: SPC-4 5.13.11.2.5 has the
// device server abort the preempted nexuses' tasks only).
func (lu *LogicalUnit) abortPreempted(self *Nexus, preempted []PRPort) bool {
	if len(preempted) == 0 {
		return true
	}
	own := nexusKey(self)
	return lu.abortNexusTasks(func(k string) bool {
		if k == own {
			return false
		}
		n, ok := parseNexusKey(k)
		if !ok {
			return false
		}
		for _, p := range preempted {
			if p.Covers(n) {
				return true
			}
		}
		return false
	})
}

// quiescePoll is how often Quiesce looks at the task counters.
const quiescePoll = time.Millisecond

// Quiesce waits until no command of any nexus is in the device server, or
// ctx ends. A gateway handing the LU to another calls it after it stopped
// admitting media commands, so that none of its writes lands after the
// next owner's first.
func (lu *LogicalUnit) Quiesce(ctx context.Context) error {
	for {
		busy := false
		lu.mu.Lock()
		for _, st := range lu.nexuses {
			if st.tasks.running[0].Load() > 0 || st.tasks.running[1].Load() > 0 {
				busy = true
				break
			}
		}
		lu.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("scsi: LU %s: commands still in flight: %w", lu.cfg.Name, ctx.Err())
		case <-time.After(quiescePoll):
		}
	}
}
