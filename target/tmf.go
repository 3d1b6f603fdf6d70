package target

import (
	"github.com/rbdgw/rbdgw/scsi"
)

// tmfWait is a Task Management request whose response waits until every
// task it aborted has stopped (SAM-5 7.2: the function completes when the
// affected tasks are gone) and the device server has acted on it.
type tmfWait struct {
	req       TaskMgmtReq
	remaining int
	result    uint8 // iSCSI TMF response code (RFC 7143 11.6.1)
	callLU    bool  // ask Router.TaskManagement after the aborts
	router    scsi.Router
	nexus     *scsi.Nexus
}

func (c *conn) handleTMF(p *TaskMgmtReq, bhs *[bhsLen]byte) error {
	return c.handleOrdered(p.Immediate, p.CmdSN, p, bhs)
}

func (c *conn) tmfInOrder(p *TaskMgmtReq, _ *[bhsLen]byte) error {
	w := &tmfWait{req: *p, router: c.sess.router, nexus: &c.sess.nexus}
	switch p.Function {
	case tmfAbortTask:
		t := c.tasks[p.RefTaskTag]
		if t == nil || t.aborted {
			// RFC 7143 11.5.1 (c): "If the Referenced Task Tag does not
			// identify an existing task, but if the CmdSN indicated by the
			// RefCmdSN field ... is within the valid CmdSN window and less
			// than the CmdSN of the Task Management function request itself,
			// then targets must consider the CmdSN received and return the
			// 'Function complete' response."
			_, queuedAlready := c.pending[p.RefCmdSN]
			if c.inWindow(p.RefCmdSN) && snLess(p.RefCmdSN, p.CmdSN) && !queuedAlready {
				if p.RefCmdSN == c.expCmdSN {
					if err := c.sequence(p.RefCmdSN, queued{kind: qSkip}); err != nil {
						return err
					}
				} else {
					c.pending[p.RefCmdSN] = queued{kind: qSkip}
				}
				w.result = tmfRespComplete
				return c.tmfRespond(w)
			}
			// RFC 7143 11.5.1 (d): otherwise "Task does not exist".
			w.result = tmfRespNoTask
			return c.tmfRespond(w)
		}
		// RFC 7143 11.5.1: for ABORT TASK the LUN field must name the task's LU.
		if t.lun != p.LUN {
			w.result = tmfRespNoTask
			return c.tmfRespond(w)
		}
		c.abortTask(t, w)
	case tmfAbortTaskSet, tmfClearTaskSet, tmfLogicalUnitReset:
		for _, t := range c.tasks {
			if t.lun == p.LUN {
				c.abortTask(t, w)
			}
		}
		w.callLU = true
	case tmfTargetWarmReset, tmfTargetColdReset:
		for _, t := range c.tasks {
			c.abortTask(t, w)
		}
		w.callLU = true
	case tmfClearACA:
		w.callLU = true
	case tmfTaskReassign:
		// RFC 7143 11.5.1: TASK REASSIGN needs ErrorRecoveryLevel 2;
		// at ERL 0 the answer is "Task allegiance reassignment not
		// supported" (11.6.1 code 4).
		countError("tmf_reassign_erl0")
		w.result = tmfRespNoReassignSupport
		return c.tmfRespond(w)
	default:
		// RFC 7143 11.6.1: 5 "Task management function not supported".
		countError("tmf_unsupported")
		w.result = tmfRespNotSupported
		return c.tmfRespond(w)
	}
	if w.remaining == 0 {
		c.tmfRun(w)
	}
	return nil
}

// abortTask stops one task: its ctx is cancelled and its response will
// never be sent. Tasks not yet executing are retired at once; running ones
// are retired when their worker returns, and w waits for that.
func (c *conn) abortTask(t *task, w *tmfWait) {
	if t.aborted {
		return
	}
	t.aborted = true
	delete(c.tasks, t.itt)
	if t.running {
		t.ctx.cancel()
		t.waiters = append(t.waiters, w)
		w.remaining++
		return
	}
	if t.delivered {
		c.releaseTask(t)
	}
	// Undelivered tasks stay in the CmdSN queue so ExpCmdSN still passes
	// them; startTask retires them.
}

// tmfTaskGone is called by taskDone for each aborted task's waiter.
func (c *conn) tmfTaskGone(w *tmfWait) {
	w.remaining--
	if w.remaining == 0 {
		c.tmfRun(w)
	}
}

// tmfRun finishes a TMF once its tasks are gone: the device server's part
// may block (reservations in etcd), so it runs off the serve loop.
func (c *conn) tmfRun(w *tmfWait) {
	if !w.callLU || w.router == nil {
		w.result = tmfRespComplete
		_ = c.tmfRespond(w)
		return
	}
	go func() {
		res := scsi.TMFRejected
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.log.Error("task management panic", "panic", r)
				}
			}()
			res = w.router.TaskManagement(w.nexus, tmfFunction(w.req.Function), w.req.LUN)
		}()
		w.result = tmfResultCode(res)
		select {
		case c.tmfDoneCh <- w:
		case <-c.loopDone:
		}
	}()
}

func (c *conn) tmfFinished(w *tmfWait) error { return c.tmfRespond(w) }

func (c *conn) tmfRespond(w *tmfWait) error {
	c.push(outItem{pdu: &TaskMgmtResp{Response: w.result, ITT: w.req.ITT, StatSN: c.takeStatSN(),
		ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN}})
	if w.req.Function == tmfTargetColdReset && w.result == tmfRespComplete {
		// RFC 7143 11.5.1: TARGET COLD RESET: "the target then MUST close
		// all of its TCP connections to all initiators" after the response.
		return errCloseAfterFlush
	}
	return nil
}

func tmfFunction(f uint8) scsi.TaskFunction {
	switch f {
	case tmfAbortTaskSet:
		return scsi.TMFAbortTaskSet
	case tmfClearACA:
		return scsi.TMFClearACA
	case tmfClearTaskSet:
		return scsi.TMFClearTaskSet
	case tmfLogicalUnitReset:
		return scsi.TMFLogicalUnitReset
	case tmfTargetWarmReset:
		return scsi.TMFTargetWarmReset
	case tmfTargetColdReset:
		return scsi.TMFTargetColdReset
	}
	return scsi.TMFAbortTask
}

func tmfResultCode(r scsi.TMFResult) uint8 {
	switch r {
	case scsi.TMFComplete:
		return tmfRespComplete
	case scsi.TMFTaskDoesNotExist:
		return tmfRespNoTask
	case scsi.TMFLUNDoesNotExist:
		return tmfRespNoLUN
	case scsi.TMFNotSupported:
		return tmfRespNotSupported
	}
	return tmfRespRejected
}
