package target

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// task is one SCSI command of the session. The serve loop owns every field
// except resp, which the worker writes before handing the task back on
// doneCh.
type task struct {
	itt         uint32
	cmdSN       uint32
	immediate   bool
	lun         uint64
	attr        scsi.TaskAttr
	edtl        uint32
	read, write bool
	cdb         [16]byte
	extCDB      []byte // whole CDB when longer than 16 bytes
	cdbLen      int
	bidiLen     uint32

	// inBuf's memory (its cost) is always taken from the data budgets;
	// outBuf's when outGated, else it counts as unsolicited data the
	// initiator sent unasked.
	inBuf, outBuf *pbuf

	// Data-Out state (RFC 7143 11.7, 11.8).
	received      uint32 // bytes collected, in offset order
	unsolExpected bool   // unsolicited Data-Out PDUs still to come
	unsolLimit    uint32 // min(FirstBurstLength, EDTL)
	unsolDataSN   uint32
	r2tNext       uint32 // next offset to solicit
	r2tSN         uint32
	r2ts          []r2tState // outstanding R2Ts
	lastData      time.Time

	// dataErr is set when a Data-Out of this task broke DataSN order: the
	// task collects the rest of its data, is never executed, and ends
	// with CHECK CONDITION (RFC 7143 7.8.2 option b).
	dataErr bool

	outGated    bool // outBuf's cost was taken from the data budgets
	dataWaiting bool // in conn.dataWait
	delivered   bool // passed CmdSN ordering
	counted     bool // counted in conn.inflight
	running     bool
	aborted     bool
	retired     bool
	waiters     []*tmfWait

	cmd    scsi.Command
	router scsi.Router
	ctx    taskCtx       // the command's context; cancelled by an abort
	resp   scsi.Response // written by the worker

	// The response PDUs live in the task so a command allocates nothing
	// for them; the writer holds the task until they are on the wire.
	respPDU SCSIResp
	seq     dataInSeq
}

// taskCtx is a task's context.Context, embedded in the task so a command
// costs no context allocations. Its Done channel is made only when someone
// asks for it. It carries no values and no deadline.
type taskCtx struct {
	mu    sync.Mutex
	done  chan struct{}
	err   error
	after map[*func()]struct{} // AfterFunc registrations not yet run
}

// AfterFunc arranges for f to run in its own goroutine once the context is
// cancelled. Contexts derived with context.WithCancel and friends use it
// instead of starting a goroutine per derivation to watch Done.
func (x *taskCtx) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		go f()
		return func() bool { return false }
	}
	key := &f
	if x.after == nil {
		x.after = map[*func()]struct{}{}
	}
	x.after[key] = struct{}{}
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		_, pending := x.after[key]
		delete(x.after, key)
		return pending
	}
}

var _ context.Context = (*taskCtx)(nil)

func (x *taskCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (x *taskCtx) Value(any) any               { return nil }

func (x *taskCtx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
		if x.err != nil {
			close(x.done)
		}
	}
	return x.done
}

func (x *taskCtx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// cancel is idempotent, like a context.CancelFunc.
func (x *taskCtx) cancel() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		return
	}
	x.err = context.Canceled
	if x.done != nil {
		close(x.done)
	}
	for f := range x.after {
		go (*f)()
	}
	x.after = nil
}

type r2tState struct {
	ttt, offset, length, received, dataSN uint32
}

func (t *task) cdbBytes() []byte {
	if t.extCDB != nil {
		return t.extCDB
	}
	return t.cdb[:t.cdbLen]
}

func (c *conn) handleSCSICmd(p *SCSICmd, raw *rawPDU) error {
	if !c.admit(p.Immediate, p.CmdSN) {
		return nil
	}
	reject := func(reason byte, token, msg string) error {
		countError(token)
		if !p.Immediate {
			// A rejected command still consumes its CmdSN, or the window
			// would stall on the hole.
			if err := c.sequence(p.CmdSN, queued{kind: qSkip}); err != nil {
				return err
			}
		}
		return &TaskError{ITT: p.ITT, Reason: reason, Msg: msg}
	}
	// RFC 7143 11.2.1.8: 0xffffffff is reserved and never an ITT of a task.
	if p.ITT == reservedTag {
		return reject(RejectInvalidField, "scsi_reserved_itt", "reserved ITT")
	}
	// RFC 7143 11.17.1: 0x07 "Task in progress": an ITT already in use.
	if _, busy := c.tasks[p.ITT]; busy {
		return reject(RejectTaskInProgress, "scsi_itt_in_use", "ITT in use")
	}
	if len(p.Data) > 0 {
		// RFC 7143 13.11: with ImmediateData=No "the initiator MUST NOT send
		// unsolicited data with the SCSI Command PDU".
		if !c.params.ImmediateData {
			return reject(RejectProtocolError, "scsi_immediate_data_not_negotiated", "immediate data not negotiated")
		}
		// RFC 7143 11.3.4 / 13.14: immediate data is write data, at most
		// FirstBurstLength and at most EDTL.
		if !p.Write || uint32(len(p.Data)) > p.EDTL || uint32(len(p.Data)) > c.params.FirstBurstLength {
			return reject(RejectProtocolError, "scsi_immediate_data_too_long", "immediate data beyond EDTL or FirstBurstLength")
		}
	}
	if p.Immediate && c.immediate >= maxImmediateTasks {
		// RFC 7143 11.17.1: 0x06 "Immediate command reject - too many
		// immediate commands".
		return reject(RejectImmediate, "scsi_too_many_immediate", "too many immediate commands")
	}
	edtl := p.EDTL
	if !p.Read && !p.Write {
		// RFC 7143 11.3.1: with neither R nor W there is no data; treat a
		// stray EDTL as zero rather than buffering for it.
		edtl = 0
	}
	// The data of one command is buffered whole, so its length is bounded
	// by maxTransferLength (the most any LU advertises in its Block Limits
	// VPD page, scsi.MaxTransferBytesLimit) and by the data budgets.
	if edtl > c.maxEDTL || (p.HasBidiReadLength && p.BidiReadLength > c.maxEDTL) {
		return reject(RejectInvalidField, "scsi_edtl_too_large", fmt.Sprintf("EDTL %d beyond %d", edtl, c.maxEDTL))
	}

	t := &task{
		itt: p.ITT, cmdSN: p.CmdSN, immediate: p.Immediate, lun: p.LUN,
		attr: taskAttr(p.Attr), edtl: edtl, read: p.Read, write: p.Write,
		cdbLen: 16, lastData: time.Now(),
	}
	copy(t.cdb[:], p.CDB)
	if len(p.CDB) > 16 {
		t.extCDB = append([]byte(nil), p.CDB...)
	}
	if t.read {
		// The read buffer is allocated when the command runs
		// (runWhenReady), under the data budgets.
		t.bidiLen = edtl
		if t.write {
			t.bidiLen = p.BidiReadLength
		}
	}
	if t.write {
		t.received = uint32(len(p.Data))
		t.unsolLimit = min(c.params.FirstBurstLength, edtl)
		// RFC 7143 11.3.1 F bit: "when set to 1 it indicates that no
		// unsolicited SCSI Data-Out PDUs follow this PDU"; with InitialR2T=Yes
		// none may follow anyway (13.10).
		t.unsolExpected = !p.Final && !c.params.InitialR2T && t.received < t.unsolLimit
		t.r2tNext = t.received
		// Only the data the initiator may send unasked is buffered now;
		// the rest when R2Ts solicit it (advanceWrite), under the budgets.
		switch {
		case len(p.Data) > 0 && !t.unsolExpected && raw.buf != nil:
			// The reader's buffer becomes the write buffer, no copy: all
			// the data, or its immediate part.
			t.outBuf, raw.buf = raw.buf, nil
			t.outBuf.b = t.outBuf.b[:len(p.Data)]
		case t.unsolExpected || len(p.Data) > 0:
			t.outBuf = c.pool.get(int(max(t.unsolLimit, t.received)))
			copy(t.outBuf.b, p.Data)
		}
		c.srv.stats.unsolicitedBytes.Add(t.outBuf.cost())
	}
	c.tasks[p.ITT] = t
	if p.Immediate {
		c.immediate++
		return c.startTask(t)
	}
	return c.sequence(p.CmdSN, queued{kind: qTask, task: t})
}

func (b *pbuf) bytes() []byte {
	if b == nil {
		return nil
	}
	return b.b
}

func taskAttr(a uint8) scsi.TaskAttr {
	// RFC 7143 11.3.1 ATTR: 0 untagged, 1 simple, 2 ordered, 3 head of
	// queue, 4 ACA.
	switch a {
	case 2:
		return scsi.TaskOrdered
	case 3:
		return scsi.TaskHeadOfQueue
	case 4:
		return scsi.TaskACA
	}
	return scsi.TaskSimple
}

// startTask runs when the task's CmdSN turn comes (immediately for
// immediate commands).
func (c *conn) startTask(t *task) error {
	if t.aborted {
		c.releaseTask(t)
		return nil
	}
	t.delivered = true
	if !t.immediate {
		t.counted = true
		c.inflight++
	}
	return c.advanceWrite(t)
}

// advanceWrite moves a task through its data-out phase: it solicits data
// with R2Ts while data is missing and starts execution once all EDTL bytes
// are in.
func (c *conn) advanceWrite(t *task) error {
	if !t.delivered || t.running || t.aborted {
		return nil
	}
	if t.dataErr {
		// RFC 7143 7.8.2 b): the target "MUST wait to receive all the data
		// (signaled by a Data PDU with the final bit set for all
		// outstanding R2Ts) before sending the SCSI Response PDU".
		if len(t.r2ts) == 0 && !t.unsolExpected {
			c.failTask(t, protocolCRCSense())
		}
		return nil
	}
	if !t.write || t.received >= t.edtl {
		return c.runWhenReady(t)
	}
	if t.unsolExpected {
		return nil
	}
	if t.needsWriteBuf() {
		// Room for the whole transfer before the first R2T: the initiator
		// sends no solicited data we have not made room for.
		if !c.reserveData(t) {
			return nil
		}
	}
	// RFC 7143 13.17: at most MaxOutstandingR2T R2Ts per task, each asking
	// for at most MaxBurstLength bytes (13.13).
	for uint32(len(t.r2ts)) < c.params.MaxOutstandingR2T && t.r2tNext < t.edtl {
		n := min(c.params.MaxBurstLength, t.edtl-t.r2tNext)
		r := r2tState{ttt: c.newTTT(), offset: t.r2tNext, length: n}
		t.r2ts = append(t.r2ts, r)
		t.r2tNext += n
		// RFC 7143 11.8: R2T carries the next StatSN without advancing it.
		c.push(outItem{pdu: &R2T{LUN: t.lun, ITT: t.itt, TTT: r.ttt, StatSN: c.statSN,
			ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN, R2TSN: t.r2tSN,
			BufferOffset: r.offset, DesiredLength: r.length}})
		t.r2tSN++
	}
	return nil
}

func (c *conn) handleDataOut(p *DataOut) error {
	t := c.tasks[p.ITT]
	if t == nil || t.aborted {
		// Data for a task we aborted (or never knew) is discarded: RFC 7143
		// 11.5.1 lets in-flight Data-Out of an aborted task arrive late.
		countError("dataout_unknown_itt")
		return nil
	}
	if !t.write || t.running {
		countError("dataout_unexpected")
		return &ConnError{Reason: fmt.Sprintf("Data-Out for ITT %#x that expects none", p.ITT)}
	}
	n := uint32(len(p.Data))
	t.lastData = time.Now()
	if p.TTT == reservedTag {
		// Unsolicited data (RFC 7143 11.7.4: TTT 0xffffffff).
		if !t.unsolExpected {
			countError("dataout_unsolicited_not_allowed")
			return &ConnError{Reason: "unsolicited Data-Out not expected"}
		}
		if t.dataErr {
			// The task already failed: drop the data, watch for the end
			// of the unsolicited sequence.
			if p.Final || p.BufferOffset+n >= t.unsolLimit {
				t.unsolExpected = false
			}
			return c.advanceWrite(t)
		}
		// RFC 7143 11.7.5: "For output (write) data PDUs, the DataSN is the
		// Data-Out PDU number within the current output sequence", from 0.
		// RFC 7143 7.9: "When a target receives a data PDU with an
		// out-of-order DataSN, it means that the target must have hit a
		// header or payload digest error on at least one of the earlier
		// data PDUs. The target MUST address these implied digest errors
		// as described in Section 7.8.2" - at ERL 0, by terminating the
		// task with CHECK CONDITION once its data is in.
		if p.DataSN != t.unsolDataSN {
			countError("dataout_bad_datasn")
			t.dataErr = true
			if p.Final || p.BufferOffset+n >= t.unsolLimit {
				t.unsolExpected = false
			}
			return c.advanceWrite(t)
		}
		// RFC 7143 13.19 DataPDUInOrder=Yes: offsets increase with no gaps.
		if p.BufferOffset != t.received {
			countError("dataout_bad_offset")
			return &ConnError{Reason: fmt.Sprintf("Data-Out offset %d, want %d", p.BufferOffset, t.received)}
		}
		// RFC 7143 13.14: unsolicited data is at most FirstBurstLength.
		if t.received+n > t.unsolLimit {
			countError("dataout_first_burst")
			return &ConnError{Reason: "unsolicited data beyond FirstBurstLength"}
		}
		copy(t.outBuf.b[t.received:], p.Data)
		t.received += n
		t.unsolDataSN++
		if p.Final || t.received == t.unsolLimit {
			t.unsolExpected = false
			t.r2tNext = t.received
		}
		return c.advanceWrite(t)
	}
	i := 0
	for i < len(t.r2ts) && t.r2ts[i].ttt != p.TTT {
		i++
	}
	if i == len(t.r2ts) {
		// RFC 7143 11.7.4: the TTT must be one the target gave in an R2T.
		countError("dataout_bad_ttt")
		return &ConnError{Reason: fmt.Sprintf("Data-Out with unknown TTT %#x", p.TTT)}
	}
	r := &t.r2ts[i]
	if !t.dataErr && p.DataSN != r.dataSN {
		// RFC 7143 7.9 (see above): an out-of-order DataSN is an implied
		// digest error; 7.8.2 b) lets an ERL 0 target end the task with
		// CHECK CONDITION after all data of the outstanding R2Ts is in.
		countError("dataout_bad_datasn")
		t.dataErr = true
	}
	if t.dataErr {
		// Drop the data; the sequence ends with the F bit or its last byte.
		r.received += n
		if p.Final || r.received >= r.length {
			t.r2ts = append(t.r2ts[:i], t.r2ts[i+1:]...)
		}
		return c.advanceWrite(t)
	}
	if p.BufferOffset != r.offset+r.received {
		countError("dataout_bad_offset")
		return &ConnError{Reason: fmt.Sprintf("Data-Out offset %d, want %d", p.BufferOffset, r.offset+r.received)}
	}
	// RFC 7143 11.8.4: the initiator sends no more than the Desired Data
	// Transfer Length of the R2T.
	if r.received+n > r.length {
		countError("dataout_beyond_r2t")
		return &ConnError{Reason: "Data-Out beyond the R2T's desired length"}
	}
	copy(t.outBuf.b[p.BufferOffset:], p.Data)
	r.received += n
	r.dataSN++
	t.received += n
	if r.received == r.length {
		t.r2ts = append(t.r2ts[:i], t.r2ts[i+1:]...)
	} else if p.Final {
		countError("dataout_short_sequence")
		return &ConnError{Reason: "F bit before the R2T's data was complete"}
	}
	return c.advanceWrite(t)
}

// runWhenReady executes the task once its read buffer, if it needs one,
// fits under the data budgets.
func (c *conn) runWhenReady(t *task) error {
	if t.read && t.bidiLen > 0 && t.inBuf == nil {
		if !c.reserveData(t) {
			return nil
		}
	}
	c.execute(t)
	return nil
}

// needsWriteBuf reports that the write buffer cannot take the data still
// to be solicited.
func (t *task) needsWriteBuf() bool {
	return t.write && t.received < t.edtl && (t.outBuf == nil || uint32(len(t.outBuf.b)) < t.edtl)
}

// dataNeed is the size of the task's next buffer: the whole write buffer
// before its R2Ts, else its read buffer.
func (t *task) dataNeed() int {
	if t.needsWriteBuf() {
		return int(t.edtl)
	}
	return int(t.bidiLen)
}

// reserveData takes room for the task's next buffer from the session's
// and the Server's data budgets and allocates it. When there is no room,
// or tasks already wait (they are served in order), the task joins the
// queue and reserveData returns false; retryData resumes it.
func (c *conn) reserveData(t *task) bool {
	if t.dataWaiting {
		return false
	}
	if len(c.dataWait) == 0 && c.takeData(bufCost(t.dataNeed())) {
		c.grantData(t)
		return true
	}
	t.dataWaiting = true
	c.dataWait = append(c.dataWait, t)
	c.srv.stats.dataWaits.Add(1)
	countError("data_budget_wait")
	c.armDataWait()
	c.dataRetry = true // room may have come back before the channels were armed
	return false
}

// takeData takes n bytes from both budgets, or none.
func (c *conn) takeData(n int64) bool {
	if !c.budget.tryTake(n) {
		return false
	}
	if !c.srv.budget.tryTake(n) {
		c.budget.give(n)
		return false
	}
	return true
}

// giveData returns bytes to both budgets. The writer calls it too.
func (c *conn) giveData(n int64) {
	if n != 0 {
		c.budget.give(n)
		c.srv.budget.give(n)
	}
}

func (c *conn) armDataWait() {
	c.connFreed, c.srvFreed = c.budget.wait(), c.srv.budget.wait()
}

// grantData allocates the buffer dataNeed named, its room already taken.
func (c *conn) grantData(t *task) {
	n := t.dataNeed()
	if t.needsWriteBuf() {
		b := c.pool.get(n)
		if t.outBuf != nil {
			copy(b.b, t.outBuf.b[:t.received])
			// The unsolicited buffer's cost is read before it goes back
			// to the pool, where another connection may take it at once.
			c.srv.stats.unsolicitedBytes.Add(-t.outBuf.cost())
			c.pool.put(t.outBuf)
		}
		t.outBuf, t.outGated = b, true
		// The Data-Out timeout runs from the first R2T, not from the
		// command's arrival.
		t.lastData = time.Now()
		return
	}
	t.inBuf = c.pool.get(n)
}

// retryData serves the tasks waiting for room, in order, until one does
// not fit.
func (c *conn) retryData() error {
	c.dataRetry = false
	c.connFreed, c.srvFreed = nil, nil
	for len(c.dataWait) > 0 {
		t := c.dataWait[0]
		c.armDataWait()
		if !c.takeData(bufCost(t.dataNeed())) {
			return nil
		}
		c.dataWait[0] = nil
		c.dataWait = c.dataWait[1:]
		t.dataWaiting = false
		c.grantData(t)
		// On with the task: R2Ts for the write data, or execution.
		if err := c.advanceWrite(t); err != nil {
			return err
		}
	}
	c.connFreed, c.srvFreed = nil, nil
	c.dataWait = nil
	c.updateWindow()
	return nil
}

// execute hands the task to a worker. The CmdSN window bounds how many run.
func (c *conn) execute(t *task) {
	t.running = true
	dir := scsi.DirNone
	if t.read {
		dir |= scsi.DirRead
	}
	if t.write {
		dir |= scsi.DirWrite
	}
	t.cmd = scsi.Command{
		Nexus: &c.sess.nexus, LUN: t.lun, Tag: t.itt, Attr: t.attr, CDB: t.cdbBytes(),
		Dir: dir, ExpectedLength: t.edtl,
	}
	if t.outBuf != nil {
		t.cmd.DataOut = t.outBuf.b[:t.received]
	}
	if t.inBuf != nil {
		t.cmd.DataIn = t.inBuf.b
	}
	t.router = c.sess.router
	c.inflightGauge.Add(1)
	c.busy++
	if c.busy > c.spawned {
		// Workers stay for the connection's life, so a burst pays for
		// goroutine creation and stack growth once. Every task is bounded
		// by the CmdSN window (plus maxImmediateTasks), and so are they.
		c.spawned++
		c.workers.Add(1)
		go c.worker()
	}
	c.workCh <- t
}

// worker runs tasks from workCh until the connection closes it. The serve
// loop keeps at least as many workers as tasks executing, so a send on
// workCh always finds one.
func (c *conn) worker() {
	defer c.workers.Done()
	for t := range c.workCh {
		c.runTask(t)
	}
}

// runTask runs one command and hands the task back. A panic in the device
// server becomes a CHECK CONDITION for this command only (no
// input takes the daemon down).
func (c *conn) runTask(t *task) {
	r := t.router
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("scsi command panic", "panic", p, "cdb0", t.cmd.CDB[0])
			// SPC-4: HARDWARE ERROR / INTERNAL TARGET FAILURE (44/00).
			t.resp = scsi.Response{Status: scsi.StatusCheckCondition, Sense: internalFailureSense()}
		}
		c.doneCh <- t
	}()
	t.resp = r.Execute(&t.ctx, &t.cmd)
}

func internalFailureSense() []byte {
	s := make([]byte, 18)
	s[0] = 0x70
	s[2] = 0x04 // HARDWARE ERROR
	s[7] = 10
	s[12] = 0x44
	return s
}

// taskDone builds the Data-In and SCSI Response PDUs of a finished task.
func (c *conn) taskDone(t *task) {
	c.inflightGauge.Add(-1)
	c.busy--
	t.running = false
	t.ctx.cancel()
	if t.aborted {
		// RFC 7143 11.5.1: an aborted task's response is never sent.
		c.releaseTask(t)
		for _, w := range t.waiters {
			c.tmfTaskGone(w)
		}
		return
	}
	c.respond(t)
}

// failTask ends a task that was never executed with CHECK CONDITION and
// the given sense data.
func (c *conn) failTask(t *task, sense []byte) {
	t.resp = scsi.Response{Status: scsi.StatusCheckCondition, Sense: sense}
	c.respond(t)
}

// protocolCRCSense is ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR: RFC 7143
// 11.4.7.2 names it for a task ended by a (possibly implied) digest error.
func protocolCRCSense() []byte {
	s := make([]byte, 18)
	s[0] = 0x70
	s[2] = 0x0b // ABORTED COMMAND
	s[7] = 10
	s[12], s[13] = 0x47, 0x05
	return s
}

// respond retires a task that is not running and sends its Data-In and
// SCSI Response built from t.resp.
func (c *conn) respond(t *task) {
	c.releaseTask(t) // keeps inBuf: it travels with the Data-In below
	resp := t.resp
	edtl := t.edtl
	tl := uint32(max(resp.TransferLength, 0))
	var over, under bool
	var resid uint32
	// RFC 7143 11.4.5: O is set when the command wanted more than EDTL
	// (residual = the excess), U when it wanted less (residual = shortfall).
	switch {
	case tl > edtl:
		over, resid = true, tl-edtl
	case tl < edtl:
		under, resid = true, edtl-tl
	}
	var dataSNs uint32
	if t.read && t.inBuf != nil {
		n := min(max(resp.DataLen, 0), len(t.inBuf.b))
		if !t.write {
			n = min(n, int(edtl))
		}
		if n > 0 {
			maxBurst := int(c.params.MaxBurstLength)
			seq := &t.seq
			*seq = dataInSeq{itt: t.itt, lun: t.lun, data: t.inBuf.b[:n], maxSeg: c.maxSend,
				maxBurst: maxBurst, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN}
			dataSNs = dataInCount(n, c.maxSend, maxBurst)
			// RFC 7143 11.7.2 S bit: status may ride on the last Data-In
			// only when there is no sense data to send.
			if resp.Status == scsi.StatusGood && len(resp.Sense) == 0 && !t.write {
				seq.withStatus = true
				seq.status = resp.Status
				seq.statSN = c.takeStatSN()
				seq.overflow, seq.underflow, seq.residual = over, under, resid
				c.push(outItem{seq: seq, buf: t.inBuf, held: t.inBuf.cost()})
				t.inBuf = nil
				return
			}
			c.push(outItem{seq: seq, buf: t.inBuf, held: t.inBuf.cost()})
			t.inBuf = nil
		}
	}
	if t.write {
		dataSNs = t.r2tSN
	}
	r := &t.respPDU
	*r = SCSIResp{Status: resp.Status, ITT: t.itt, StatSN: c.takeStatSN(), ExpCmdSN: c.expCmdSN,
		MaxCmdSN: c.maxCmdSN, ExpDataSN: dataSNs, Overflow: over, Underflow: under, Residual: resid}
	var buf *pbuf
	if len(resp.Sense) > 0 {
		// RFC 7143 11.4.7.2: the data segment is SenseLength (2 bytes) and
		// the sense data.
		buf = c.pool.get(2 + len(resp.Sense))
		be.PutUint16(buf.b, uint16(len(resp.Sense)))
		copy(buf.b[2:], resp.Sense)
		r.Data = buf.b
	}
	c.push(outItem{pdu: r, buf: buf})
	c.giveData(t.inBuf.cost())
	c.pool.put(t.inBuf)
	t.inBuf = nil
}

// releaseTask retires a task: out of the ITT table, out of the window
// count, write buffer back to the pool. The read buffer stays for the
// caller when a response is still to be built.
func (c *conn) releaseTask(t *task) {
	if t.retired {
		return
	}
	if t.running {
		return // the worker still uses the buffers; taskDone retires it
	}
	t.retired = true
	if c.tasks[t.itt] == t {
		delete(c.tasks, t.itt)
	}
	if t.immediate && t.delivered {
		c.immediate--
	}
	if t.dataWaiting {
		t.dataWaiting = false
		for k, w := range c.dataWait {
			if w == t {
				c.dataWait = append(c.dataWait[:k], c.dataWait[k+1:]...)
				break
			}
		}
		c.dataRetry = true // the task behind it may fit
	}
	if t.counted {
		t.counted = false
		c.inflight--
		c.updateWindow()
	}
	if t.outGated {
		c.giveData(t.outBuf.cost())
	} else if t.outBuf != nil {
		c.srv.stats.unsolicitedBytes.Add(-t.outBuf.cost())
	}
	c.pool.put(t.outBuf)
	t.outBuf, t.outGated = nil, false
	if t.aborted {
		c.giveData(t.inBuf.cost())
		c.pool.put(t.inBuf)
		t.inBuf = nil
	}
}
