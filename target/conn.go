package target

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// Named caps on every queue, so a peer that floods one cannot grow the
// gateway's memory without bound. Exceeding one is a ConnError.
const (
	maxQueuedWrites    = 8192     // PDUs waiting for the writer
	maxReadAhead       = 16       // PDUs the reader may frame ahead of the loop in full feature phase
	readBufSize        = 64 << 10 // the reader's buffer: one read syscall frames many small PDUs
	loginReadBufSize   = 4 << 10  // its buffer until full feature phase: a connection logging in holds little
	maxQueuedCtrl      = 8        // control messages from the Server
	maxImmediateTasks  = 64       // immediate commands in flight
	maxLoginText       = 64 << 10 // joined login/text request bytes
	maxTransferLength  = 64 << 20 // largest EDTL we buffer
	shutdownLogoutWait = 5 * time.Second
	finalFlushTimeout  = 2 * time.Second
	loginMaxSegment    = 8192 // RFC 7143 13.12: MaxRecvDataSegmentLength default, in force during login
)

type ctrlKind uint8

const (
	ctrlShutdown ctrlKind = iota + 1 // ask the initiator to log out
	ctrlDrop                         // close now (reinstatement, target removed)
	ctrlRouter                       // switch the session to router (a new LUN map)
)

// ctrlMsg is a request from the Server to a connection's serve loop:
// changes reach a connection as messages, never by mutating state its
// loop is reading.
type ctrlMsg struct {
	kind   ctrlKind
	reason string
	router scsi.Router // ctrlRouter
}

// readResult is one PDU or the reader's terminal error.
type readResult struct {
	raw rawPDU
	err error
}

// errCloseAfterFlush ends the serve loop cleanly after a Logout Response or a
// login rejection: what is queued is written, then the connection closes.
var errCloseAfterFlush = errors.New("close after flush")

// errLogoutSession ends the serve loop after a Logout that closes the
// session: the connection's tasks are ended and the nexus is released
// (RESERVE(6) reservations, unit attention state) before the Logout
// Response in c.logoutResp goes out, so an initiator that reserves from
// another session as soon as it reads the response finds the reservation
// gone (libiscsi Reserve6.Logout).
var errLogoutSession = errors.New("logout closes the session")

// conn is one iSCSI connection. Field groups name their owner.
type conn struct {
	// Immutable.
	srv  *Server
	nc   net.Conn
	src  string // the peer's IP address
	log  *slog.Logger
	pool *bufPool

	// preLogin is set while the connection counts against its source's
	// Limits.MaxPreLoginPerSource; guarded by srv.mu.
	preLogin bool

	// budget bounds the data buffers of the connection's session
	// (Limits.MaxDataPerSession); taken by the serve loop, given back by
	// it and by the writer.
	budget *dataBudget
	// maxEDTL is the largest expected data transfer length accepted: no
	// more than maxTransferLength or either data budget.
	maxEDTL uint32

	// Channels into the serve loop, each commented with its sender.
	readCh    chan readResult // written by readLoop; cap maxReadAhead
	readMore  chan struct{}   // written by the serve loop, read by readLoop: the gate (credits, cap maxReadAhead)
	doneCh    chan *task      // written by runTask workers
	workCh    chan *task      // written by the serve loop, read by workers; closed in teardown
	tmfDoneCh chan *tmfWait   // written by tmf router goroutines
	ctrlCh    chan ctrlMsg    // written by Server methods
	loopDone  chan struct{}   // closed by the serve loop when it returns
	finished  chan struct{}   // closed when the connection is fully torn down

	wq *writeQueue // shared with writeLoop under its own mutex

	// logoutResp is the Logout Response serve sends once the session has
	// ended (set by the loop just before it returns errLogoutSession).
	logoutResp *LogoutResp

	// Owned by readLoop; reconfigured by the serve loop only while readLoop
	// waits on readMore.
	pr pduReader

	inflightGauge atomic.Int32 // commands executing, for Sessions()
	workers       sync.WaitGroup

	// Owned by the serve loop.
	loopG        goroutineID
	full         bool // full feature phase reached
	login        loginState
	sess         *session
	params       SessionParams
	op           Operational
	maxSend      int // most data bytes per PDU we send (initiator's MRDSL)
	statSN       uint32
	expCmdSN     uint32
	maxCmdSN     uint32
	depth        uint32
	inflight     uint32 // delivered non-immediate tasks not yet retired
	immediate    int
	busy         int               // tasks handed to workers and not yet back on doneCh
	spawned      int               // worker goroutines started
	tasks        map[uint32]*task  // by ITT
	pending      map[uint32]queued // CmdSN reorder queue, in window, > ExpCmdSN
	nextTTT      uint32
	text         textState
	lastRecv     time.Time
	nopTTT       uint32
	nopSent      time.Time
	nopPending   bool
	logoutBy     time.Time // shutdown: drop if no Logout by then
	shuttingDown bool
	gapSince     time.Time // when pending last became non-empty
	creditOwed   bool      // the reader waits for a held login step's answer
	// Tasks waiting, in order, for room under the data budgets, and the
	// channels that say room was made (nil when none waits).
	dataWait            []*task
	connFreed, srvFreed <-chan struct{}
	dataRetry           bool // a waiting task left: retry the queue's new head
}

func newConn(s *Server, nc net.Conn, src string) *conn {
	c := &conn{
		srv:       s,
		nc:        nc,
		src:       src,
		log:       s.log.With("remote", nc.RemoteAddr().String()),
		pool:      s.pool,
		readCh:    make(chan readResult, maxReadAhead),
		readMore:  make(chan struct{}, maxReadAhead),
		tmfDoneCh: make(chan *tmfWait, 4),
		ctrlCh:    make(chan ctrlMsg, maxQueuedCtrl),
		loopDone:  make(chan struct{}),
		finished:  make(chan struct{}),
		wq:        newWriteQueue(),
		tasks:     map[uint32]*task{},
		pending:   map[uint32]queued{},
		op:        withOpDefaults(DefaultOperational()),
		budget:    newDataBudget(s.limits.MaxDataPerSession),
		maxEDTL:   uint32(min(maxTransferLength, s.limits.MaxDataPerSession, s.limits.MaxDataPerServer)),
	}
	c.pr = pduReader{r: bufio.NewReaderSize(nc, loginReadBufSize), maxData: loginMaxSegment, pool: s.pool, reuse: true}
	return c
}

const maxCmdSNDepth = 4096

func withOpDefaults(op Operational) Operational {
	d := DefaultOperational()
	if op.CmdSNDepth == 0 {
		op.CmdSNDepth = d.CmdSNDepth
	}
	op.CmdSNDepth = min(op.CmdSNDepth, maxCmdSNDepth)
	if op.MaxRecvDataSegmentLength == 0 {
		op.MaxRecvDataSegmentLength = d.MaxRecvDataSegmentLength
	}
	return op
}

// send hands a control message to the serve loop and returns a channel that
// is closed once the connection is torn down.
func (c *conn) send(m ctrlMsg) <-chan struct{} {
	select {
	case c.ctrlCh <- m:
	case <-c.finished:
	}
	return c.finished
}

// serve runs the connection: it starts the reader and writer, runs the
// loop, and tears everything down in order.
func (c *conn) serve() {
	defer c.srv.connGone(c)
	defer close(c.finished)
	go c.readLoop()
	writerDone := make(chan struct{})
	go func() { c.writeLoop(); close(writerDone) }()

	err := c.loop()
	close(c.loopDone)
	if err != nil && !errors.Is(err, errCloseAfterFlush) && !errors.Is(err, errLogoutSession) {
		c.log.Debug("iscsi connection closed", "err", err)
	}
	logout := errors.Is(err, errLogoutSession)
	if se := c.sess; se != nil {
		reason := "logout"
		if !logout {
			reason = fmt.Sprint(err)
		}
		lvl := slog.LevelInfo
		if se.params.SessionType == SessionDiscovery {
			lvl = slog.LevelDebug
		}
		c.srv.log.Log(context.Background(), lvl, "iscsi session closed", "initiator", se.key.initiator,
			"source", c.nc.RemoteAddr().String(), "target", se.params.TargetName, "tsih", se.tsih, "reason", reason)
	}
	if logout {
		// The session ends (steps 3 and 4) before its Logout Response
		// leaves.
		c.endTasks()
		c.endNexus()
		c.wq.push(outItem{pdu: c.logoutResp})
	}
	// 1. Let the writer flush what is queued (a Logout Response, a login
	//    reject), bounded so a peer that does not read cannot hold us.
	_ = c.nc.SetWriteDeadline(time.Now().Add(finalFlushTimeout))
	c.wq.close()
	<-writerDone
	// 2. Close the socket: the reader's blocked read returns.
	c.nc.Close()
	if !logout {
		// 3. Abort every task and wait for workers so no result is sent
		//    and no buffer is in use.
		c.endTasks()
		// 4. The nexus is gone.
		c.endNexus()
	}
}

// endTasks aborts every task and waits for the workers, so no result is
// sent and no buffer is in use any more. It runs once, after the loop.
func (c *conn) endTasks() {
	for _, t := range c.tasks {
		t.aborted = true
		t.ctx.cancel()
	}
	if c.workCh != nil {
		close(c.workCh) // the loop is gone: nothing sends any more
	}
	c.workers.Wait()
	for _, t := range c.tasks {
		t.running = false
		c.releaseTask(t)
	}
	// Tasks aborted while running left c.tasks; their workers handed them
	// back on doneCh, which no loop reads any more. Their buffers go back
	// to the data budgets here.
	for n := len(c.doneCh); n > 0; n-- {
		t := <-c.doneCh
		t.running, t.aborted = false, true
		c.releaseTask(t)
	}
}

// endNexus tells the device server the session's nexus is gone; once,
// after endTasks.
func (c *conn) endNexus() {
	if c.sess != nil {
		c.srv.endSession(c.sess)
	}
}

// readLoop is the only goroutine reading the socket. After each PDU it takes
// a credit from the readMore gate. During login the loop hands back one
// credit per PDU it has dispatched, so the reader waits while the loop
// changes framing (digests, MaxRecvDataSegmentLength) between PDUs. Framing
// never changes in full feature phase, so on entering it the loop grants
// maxReadAhead-1 more credits: the reader then frames up to maxReadAhead
// PDUs ahead (each in its own pooled buffer) while the loop works.
func (c *conn) readLoop() {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("iscsi reader panic", "panic", r)
			select {
			case c.readCh <- readResult{err: &ConnError{Reason: fmt.Sprint("reader panic: ", r)}}:
			case <-c.loopDone:
			}
		}
	}()
	for {
		raw, err := c.pr.readPDU()
		select {
		case c.readCh <- readResult{raw: raw, err: err}:
		case <-c.loopDone:
			return
		}
		if err != nil {
			return
		}
		select {
		case <-c.readMore:
		case <-c.loopDone:
			return
		}
	}
}

// loop is the serve loop: the one goroutine that owns the connection's
// state (CmdSN window, R2T tables, login stage), so none of it needs a
// lock.
func (c *conn) loop() (err error) {
	if c.srv.debugChecks {
		c.loopG = goroutineID(goid())
	}
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("iscsi connection panic", "panic", r)
			err = &ConnError{Reason: fmt.Sprint("panic: ", r)}
		}
	}()
	c.lastRecv = time.Now()
	loginTimer := time.NewTimer(c.srv.limits.LoginTimeout)
	defer loginTimer.Stop()
	var tick <-chan time.Time
	for {
		if c.full && tick == nil {
			loginTimer.Stop()
			tick = c.startTicker()
		}
		select {
		case rr := <-c.readCh:
			if err := c.received(rr); err != nil {
				return err
			}
			// Take what else the reader has framed before the writer is
			// woken, so responses leave in fewer writes.
			for n := len(c.readCh); n > 0; n-- {
				if err := c.received(<-c.readCh); err != nil {
					return err
				}
			}
		case t := <-c.doneCh:
			c.taskDone(t)
			for n := len(c.doneCh); n > 0; n-- {
				c.taskDone(<-c.doneCh)
			}
		case w := <-c.tmfDoneCh:
			if err := c.tmfFinished(w); err != nil {
				return err
			}
		case m := <-c.ctrlCh:
			if err := c.control(m); err != nil {
				return err
			}
		case now := <-tick:
			if err := c.onTick(now); err != nil {
				return err
			}
		case <-loginTimer.C:
			if !c.full {
				countError("login_timeout")
				c.srv.stats.loginTimeouts.Add(1)
				return &ConnError{Reason: "login timed out"}
			}
		case <-c.login.holdC:
			wasFull := c.full
			if err := c.resumeLogin(); err != nil {
				return err
			}
			if c.creditOwed && c.login.held == nil {
				c.creditOwed = false
				c.giveCredit(wasFull)
			}
		case <-c.connFreed:
			c.dataRetry = true
		case <-c.srvFreed:
			c.dataRetry = true
		case <-c.wq.dead:
			return &ConnError{Reason: "write failed"}
		}
		if c.dataRetry {
			if err := c.retryData(); err != nil {
				return err
			}
		}
		// One wake-up of the writer for everything this round queued.
		if c.wq.kick() {
			countError("write_queue_full")
			return &ConnError{Reason: "write queue overflow: initiator is not reading"}
		}
	}
}

// received dispatches one PDU from the reader and hands it a credit back.
func (c *conn) received(rr readResult) error {
	if rr.err != nil {
		return rr.err
	}
	c.lastRecv = time.Now()
	wasFull := c.full
	err := c.dispatch(&rr.raw)
	// Handlers copy what they keep (queued requests, login text) or take
	// the buffer (immediate data becomes the task's write buffer), so
	// what is left goes back now.
	c.pool.put(rr.raw.buf)
	if err != nil {
		return err
	}
	if c.login.held != nil {
		// A login step waits out the CHAP failure delay: the reader stays
		// at the gate until it is answered, because the answer may change
		// the framing (resumeLogin gives the credit).
		c.creditOwed = true
		return nil
	}
	c.giveCredit(wasFull)
	return nil
}

// giveCredit lets the reader frame the next PDU: one credit, and on
// entering full feature phase the read-ahead's worth.
func (c *conn) giveCredit(wasFull bool) {
	c.readMore <- struct{}{}
	if c.full && !wasFull {
		for range maxReadAhead - 1 {
			c.readMore <- struct{}{}
		}
	}
}

func (c *conn) startTicker() <-chan time.Time {
	iv := c.op.NopInInterval
	if iv <= 0 {
		iv = time.Second // still needed for shutdown and Data-Out timeouts
	}
	if c.op.NopInTimeout > 0 && c.op.NopInTimeout < iv {
		iv = c.op.NopInTimeout
	}
	iv = min(iv, c.srv.limits.CmdSNGapTimeout)
	iv = max(iv/2, 5*time.Millisecond)
	t := time.NewTicker(iv)
	go func() { <-c.loopDone; t.Stop() }()
	return t.C
}

// dispatch handles one PDU and maps typed errors to their scope: a
// ConnError ends the connection, a SessionError the session, a TaskError
// is answered with a Reject (RFC 7143 11.17).
func (c *conn) dispatch(raw *rawPDU) error {
	var err error
	if raw.err != nil {
		var pe *ParseError
		if errors.As(raw.err, &pe) {
			countError("pdu_parse")
			err = &TaskError{ITT: be.Uint32(raw.bhs[16:]), Reason: pe.Reason, Msg: pe.Msg}
		} else {
			err = &ConnError{Reason: "parse", Err: raw.err}
		}
	} else if !c.full {
		err = c.handleLoginPhase(*raw)
	} else {
		err = c.handleFull(raw)
	}
	if err == nil {
		return nil // without errors.As, whose target would escape per PDU
	}
	var te *TaskError
	if errors.As(err, &te) {
		if !c.full {
			// RFC 7143 6.? / 11.12: only Login Requests may be sent during
			// login; there is no Reject path that keeps the login going.
			return &ConnError{Reason: te.Msg}
		}
		c.sendReject(te.Reason, &raw.bhs)
		return nil
	}
	return err
}

func (c *conn) handleLoginPhase(raw rawPDU) error {
	p, ok := raw.pdu.(*LoginReq)
	if !ok {
		// RFC 7143 6.1: "the target MUST NOT accept any PDU other than a
		// Login Request" before the full feature phase.
		countError("login_non_login_pdu")
		return &ConnError{Reason: fmt.Sprintf("opcode %#x during login", raw.bhs[0]&0x3f)}
	}
	return c.handleLogin(p)
}

func (c *conn) handleFull(raw *rawPDU) error {
	discovery := c.params.SessionType == SessionDiscovery
	switch p := raw.pdu.(type) {
	case *SCSICmd:
		if discovery {
			return c.discoveryReject(p.ITT)
		}
		return c.handleSCSICmd(p, raw)
	case *DataOut:
		if discovery {
			return c.discoveryReject(p.ITT)
		}
		return c.handleDataOut(p)
	case *NopOut:
		if discovery {
			return c.discoveryReject(p.ITT)
		}
		return c.handleNopOut(p, &raw.bhs)
	case *TaskMgmtReq:
		if discovery {
			return c.discoveryReject(p.ITT)
		}
		return c.handleTMF(p, &raw.bhs)
	case *TextReq:
		return c.handleTextReq(p, &raw.bhs)
	case *LogoutReq:
		return c.handleLogout(p, &raw.bhs)
	case *LoginReq:
		// RFC 7143 6.1: a Login Request in full feature phase is a protocol
		// error.
		countError("login_in_ffp")
		return &TaskError{ITT: p.ITT, Reason: RejectProtocolError, Msg: "login request in full feature phase"}
	case *SNACKReq:
		// RFC 7143 11.16: SNACK support is required only at
		// ErrorRecoveryLevel > 0; at ERL 0 the request is rejected
		// (11.17.1 reason 0x04 "Protocol Error").
		countError("snack_erl0")
		return &TaskError{ITT: p.ITT, Reason: RejectProtocolError, Msg: "SNACK at ErrorRecoveryLevel 0"}
	default:
		// RFC 7143 11.17.1: 0x05 "Command not supported".
		countError("unknown_opcode")
		return &TaskError{ITT: be.Uint32(raw.bhs[16:]), Reason: RejectNotSupported, Msg: fmt.Sprintf("opcode %#x not supported", raw.bhs[0]&0x3f)}
	}
}

func (c *conn) discoveryReject(itt uint32) error {
	// RFC 7143 4.3: "in a Discovery session ... the initiator MUST only
	// send Text Requests ... and Logout".
	countError("discovery_bad_pdu")
	return &TaskError{ITT: itt, Reason: RejectProtocolError, Msg: "only Text and Logout in a discovery session"}
}

func (c *conn) control(m ctrlMsg) error {
	switch m.kind {
	case ctrlDrop:
		return &SessionError{Reason: m.reason}
	case ctrlRouter:
		if c.sess != nil && c.sess.router != nil {
			// Commands already running keep the router they started with
			// (task.router); new ones take the new map.
			scsi.SwitchLUNs(c.sess.router, m.router, &c.sess.nexus)
			c.sess.router = m.router
		}
	case ctrlShutdown:
		if !c.full || c.params.SessionType == SessionDiscovery {
			return &ConnError{Reason: "server shutting down"}
		}
		if c.shuttingDown {
			return nil
		}
		c.shuttingDown = true
		c.logoutBy = time.Now().Add(shutdownLogoutWait)
		// RFC 7143 11.9.1 AsyncEvent 1: "Target requests Logout ... no later
		// than Parameter3 seconds".
		c.push(outItem{pdu: &AsyncMsg{Event: asyncLogoutRequest, StatSN: c.takeStatSN(),
			ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN, Param3: uint16(shutdownLogoutWait / time.Second)}})
	}
	return nil
}

func (c *conn) onTick(now time.Time) error {
	if c.shuttingDown && now.After(c.logoutBy) {
		return &ConnError{Reason: "initiator did not log out before shutdown"}
	}
	if len(c.pending) > 0 && now.Sub(c.gapSince) > c.srv.limits.CmdSNGapTimeout {
		// Commands wait behind a CmdSN that is not coming (see
		// DefaultCmdSNGapTimeout); at ErrorRecoveryLevel 0 the way on is
		// session recovery (RFC 7143 7.1.5), which also releases what the
		// waiting commands hold.
		countError("cmdsn_gap_timeout")
		c.srv.stats.cmdSNGapTimeouts.Add(1)
		return &ConnError{Reason: fmt.Sprintf("CmdSN %d missing for %v, %d commands waiting behind it",
			c.expCmdSN, now.Sub(c.gapSince).Round(time.Millisecond), len(c.pending))}
	}
	if c.op.DataOutTimeout > 0 {
		for _, t := range c.tasks {
			// A task waiting for room under the data budgets has no R2T
			// out: the initiator owes it nothing yet.
			if t.write && t.delivered && !t.running && !t.aborted && !t.dataWaiting && now.Sub(t.lastData) > c.op.DataOutTimeout {
				countError("dataout_timeout")
				return &ConnError{Reason: "Data-Out timed out"}
			}
		}
	}
	if c.op.NopInInterval <= 0 {
		return nil
	}
	if c.nopPending {
		if c.op.NopInTimeout > 0 && now.Sub(c.nopSent) > c.op.NopInTimeout {
			countError("nopin_timeout")
			return &ConnError{Reason: "NOP-In ping timed out"}
		}
		return nil
	}
	if now.Sub(c.lastRecv) >= c.op.NopInInterval {
		c.nopTTT = c.newTTT()
		c.nopPending = true
		c.nopSent = now
		// RFC 7143 11.19: a target-initiated NOP-In has ITT 0xffffffff,
		// a TTT other than 0xffffffff, and StatSN not advanced.
		c.push(outItem{pdu: &NopIn{ITT: reservedTag, TTT: c.nopTTT, StatSN: c.statSN,
			ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN}})
	}
	return nil
}

func (c *conn) newTTT() uint32 {
	c.nextTTT++
	if c.nextTTT == reservedTag {
		c.nextTTT = 1
	}
	return c.nextTTT
}

// takeStatSN assigns the next StatSN to a status-bearing PDU as it is queued
// for the wire, which is the order it goes out in.
func (c *conn) takeStatSN() uint32 {
	c.assertLoop()
	sn := c.statSN
	c.statSN++
	return sn
}

func (c *conn) push(it outItem) {
	c.wq.push(it)
}

func (c *conn) sendReject(reason byte, bhs *[bhsLen]byte) {
	d := c.pool.get(bhsLen)
	copy(d.b, bhs[:])
	c.push(outItem{pdu: &Reject{Reason: reason, StatSN: c.takeStatSN(), ExpCmdSN: c.expCmdSN,
		MaxCmdSN: c.maxCmdSN, Data: d.b}, buf: d})
}

// ---- CmdSN ordering (RFC 7143 3.2.2.1) ----

// snLess compares sequence numbers with serial arithmetic (RFC 1982), as
// RFC 7143 3.2.2.1 requires.
func snLess(a, b uint32) bool { return int32(a-b) < 0 }

func (c *conn) inWindow(sn uint32) bool {
	return !snLess(sn, c.expCmdSN) && !snLess(c.maxCmdSN, sn)
}

// updateWindow recomputes MaxCmdSN. The window counts delivered commands
// still executing, so at most depth commands are ever in flight; it never
// shrinks, because initiators ignore a smaller MaxCmdSN. While commands
// wait for room under the data budgets it does not grow either, so the
// initiator cannot add commands (and their immediate data) meanwhile.
func (c *conn) updateWindow() {
	if len(c.dataWait) > 0 {
		return
	}
	cand := c.expCmdSN + c.depth - 1 - c.inflight
	if snLess(c.maxCmdSN, cand) {
		c.maxCmdSN = cand
	}
}

type queuedKind uint8

const (
	qSkip queuedKind = iota // CmdSN consumed without a command (rejected, or ABORT TASK RefCmdSN)
	qTask
	qPDU
)

// queued is a non-immediate request waiting for its CmdSN turn.
type queued struct {
	kind queuedKind
	task *task
	pdu  PDU
	bhs  [bhsLen]byte
	buf  *pbuf // copy of the PDU's data
}

// sequence delivers requests in CmdSN order. Non-immediate requests outside
// [ExpCmdSN, MaxCmdSN] were already dropped by the caller.
func (c *conn) sequence(sn uint32, q queued) error {
	if sn != c.expCmdSN {
		if _, dup := c.pending[sn]; dup {
			countError("cmdsn_duplicate")
			c.dropQueued(q)
			return nil
		}
		if q.kind == qPDU {
			q = c.detachData(q)
		}
		if len(c.pending) == 0 {
			c.gapSince = time.Now()
		}
		c.pending[sn] = q
		return nil
	}
	c.expCmdSN++
	if err := c.deliver(q); err != nil {
		return err
	}
	for {
		q2, ok := c.pending[c.expCmdSN]
		if !ok {
			break
		}
		delete(c.pending, c.expCmdSN)
		c.expCmdSN++
		if err := c.deliver(q2); err != nil {
			return err
		}
	}
	c.updateWindow()
	return nil
}

// detachData copies a queued PDU's data out of the reader's buffer.
func (c *conn) detachData(q queued) queued {
	var d *[]byte
	switch p := q.pdu.(type) {
	case *TextReq:
		d = &p.Data
	case *NopOut:
		d = &p.Data
	}
	if d != nil && len(*d) > 0 {
		q.buf = c.pool.get(len(*d))
		copy(q.buf.b, *d)
		*d = q.buf.b
	}
	return q
}

func (c *conn) dropQueued(q queued) {
	if q.kind == qTask {
		if c.tasks[q.task.itt] == q.task {
			delete(c.tasks, q.task.itt)
		}
		c.releaseTask(q.task)
	}
	c.pool.put(q.buf)
}

func (c *conn) deliver(q queued) error {
	switch q.kind {
	case qTask:
		return c.startTask(q.task)
	case qPDU:
		defer c.pool.put(q.buf)
		switch p := q.pdu.(type) {
		case *TextReq:
			return c.textInOrder(p, &q.bhs)
		case *NopOut:
			return c.nopInOrder(p)
		case *LogoutReq:
			return c.logoutInOrder(p)
		case *TaskMgmtReq:
			return c.tmfInOrder(p, &q.bhs)
		}
	}
	return nil
}

// admit applies the CmdSN rules common to every request that carries one.
// It returns false when the request must be silently ignored.
func (c *conn) admit(immediate bool, sn uint32) bool {
	if immediate {
		return true
	}
	// RFC 7143 3.2.2.1: "For non-immediate commands, the CmdSN field can
	// take any value from ExpCmdSN to MaxCmdSN inclusive. The target MUST
	// silently ignore any non-immediate command outside of this range".
	if !c.inWindow(sn) {
		countError("cmdsn_out_of_window")
		return false
	}
	return true
}

// handleOrdered routes a non-SCSI request through CmdSN ordering unless it
// is immediate.
func (c *conn) handleOrdered(immediate bool, sn uint32, p PDU, bhs *[bhsLen]byte) error {
	if !c.admit(immediate, sn) {
		return nil
	}
	q := queued{kind: qPDU, pdu: p, bhs: *bhs}
	if immediate {
		return c.deliver(q)
	}
	return c.sequence(sn, q)
}

// ---- goroutine ownership assertion (debug only) ----

type goroutineID uint64

// assertLoop panics when connection state is touched off the serve loop.
// Server.debugChecks (set by tests) enables it; it is free otherwise.
func (c *conn) assertLoop() {
	if c.srv.debugChecks && c.loopG != 0 && goroutineID(goid()) != c.loopG {
		panic("target: conn state touched off its serve loop")
	}
}
