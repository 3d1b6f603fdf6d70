package target

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// loginState is the serve loop's view of the login phase.
type loginState struct {
	neg     *LoginNegotiator
	started bool
	isid    [6]byte
	tsih    uint16
	cid     uint16
	itt     uint32
	in      []byte     // joined request text (C bit continuations)
	out     []byte     // response text still to send
	outOff  int        // bytes of out already sent
	reply   LoginReply // reply the pending text belongs to
	csg     uint8
	final   bool // the reply transits to full feature phase

	// held is a CHAP response waiting for its turn to be checked, or a
	// refusal waiting out the CHAP failure delay (authGuard); holdC fires
	// when the wait is over.
	held  *heldLogin
	holdC <-chan time.Time
	// refusalLogged: the refusal was logged where it was decided.
	refusalLogged bool
}

// heldLogin is a login step or a refusal held by the CHAP failure delay.
type heldLogin struct {
	step LoginStep
	csg  uint8
	fail *LoginError
}

// Login status classes/details (RFC 7143 11.13.5).
var (
	loginErrVersion   = &LoginError{Class: 2, Detail: 5, Reason: "unsupported version"}
	loginErrNoSession = &LoginError{Class: 2, Detail: 0x0a, Reason: "session does not exist"}
	loginErrTooMany   = &LoginError{Class: 2, Detail: 6, Reason: "too many connections"}
	loginErrInit      = &LoginError{Class: 2, Detail: 0, Reason: "initiator error"}
	loginErrMissing   = &LoginError{Class: 2, Detail: 7, Reason: "missing parameter"}
	loginErrNotFound  = &LoginError{Class: 2, Detail: 3, Reason: "target not found"}
)

const iscsiVersion = 0x00 // RFC 7143 11.12.4: the only version is 0x00

func (c *conn) handleLogin(p *LoginReq) error {
	ls := &c.login
	if ls.held != nil {
		// RFC 7143 11.12: "The Login Phase ... consists of a sequence of
		// Login Requests and Responses": a request before the response to
		// the last one breaks the sequence.
		countError("login_request_while_held")
		return &ConnError{Reason: "Login Request before the Login Response"}
	}
	if !ls.started {
		ls.started = true
		ls.isid, ls.tsih, ls.cid, ls.itt = p.ISID, p.TSIH, p.CID, p.ITT
		// RFC 7143 11.13.4: StatSN of the first Login Response; we follow
		// the initiator's ExpStatSN so both sides start in step.
		c.statSN = p.ExpStatSN
		// RFC 7143 11.12.7: the Login Request's CmdSN is the first one of the
		// session; login PDUs are immediate and do not advance it.
		c.expCmdSN = p.CmdSN
		c.maxCmdSN = p.CmdSN
		// RFC 7143 11.12.4: "VersionMin ... If the target does not support
		// a version within the range, it MUST respond with 'Unsupported
		// version'" (0x0205).
		if p.VersionMin > iscsiVersion {
			countError("login_version")
			return c.loginFail(loginErrVersion)
		}
		if p.TSIH != 0 {
			// RFC 7143 11.13.5: 0x020A "Session does not exist" when a
			// connection is added to a session the target does not know.
			if c.srv.sessionByTSIH(p.TSIH) == nil {
				countError("login_no_session")
				return c.loginFail(loginErrNoSession)
			}
			// We negotiate MaxConnections=1 (RFC 7143 13.2); a second
			// connection gets 0x0206 "Too many connections".
			countError("login_too_many_conns")
			return c.loginFail(loginErrTooMany)
		}
		c.login.neg = NewLoginNegotiator(LoginConfig{
			LookupTarget:  c.srv.lookupTarget,
			DiscoveryAuth: c.srv.cfg.DiscoveryAuth,
			Leading:       true,
		})
	} else if p.ISID != ls.isid || p.TSIH != ls.tsih || p.CID != ls.cid {
		// RFC 7143 6.2: ISID, TSIH and CID stay the same for the whole login.
		countError("login_ids_changed")
		return c.loginFail(loginErrInit)
	}
	ls.itt = p.ITT

	if ls.outOff < len(ls.out) {
		// RFC 7143 6.2: the initiator answers a Login Response with C=1 by
		// an empty Login Request, until the target's text is complete.
		if len(p.Data) > 0 {
			countError("login_text_during_continuation")
			return c.loginFail(loginErrInit)
		}
		return c.sendLoginChunk()
	}

	if len(ls.in)+len(p.Data) > maxLoginText {
		countError("login_text_too_long")
		return c.loginFail(&LoginError{Class: 2, Detail: 0, Reason: "login text too long"})
	}
	ls.in = append(ls.in, p.Data...)
	if p.Continue {
		// RFC 7143 11.12.2 (C bit): the request text continues; the target
		// answers with an empty Login Response and waits for the rest.
		if p.Transit {
			// RFC 7143 11.12.2: "If the C bit is 1, the T bit MUST be 0".
			return c.loginFail(loginErrInit)
		}
		c.push(outItem{pdu: &LoginResp{CSG: p.CSG, ISID: ls.isid, TSIH: ls.tsih, ITT: ls.itt,
			StatSN: c.takeStatSN(), ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN}})
		return nil
	}
	kvs, err := ParseText(ls.in)
	ls.in = ls.in[:0]
	if err != nil {
		countError("login_bad_text")
		return c.loginFail(loginErrInit)
	}
	step := LoginStep{CSG: Stage(p.CSG), NSG: Stage(p.NSG), Transit: p.Transit, Keys: kvs}
	if !ls.neg.checksCHAPResponse(step) {
		return c.loginStep(step, p.CSG, false)
	}
	// A CHAP response: its check waits for its turn (authGuard).
	wait, ok := c.srv.auth.admit(ls.neg.params.InitiatorName, c.src, time.Now())
	if !ok {
		// Its turn is too far away: refused unchecked, which tells a
		// guesser nothing.
		countError("login_chap_refused_unchecked")
		c.srv.stats.authFailures.Add(1)
		ls.refusalLogged = true // part of a burst the guard logs
		return c.loginFail(ErrAuthFailure("too many failed CHAP responses; retry later"))
	}
	if wait > 0 {
		c.holdLogin(wait, &heldLogin{step: step, csg: p.CSG})
		return nil
	}
	return c.loginStep(step, p.CSG, true)
}

// holdLogin parks a step or a refusal until wait has passed; the serve
// loop resumes it (resumeLogin). Only this connection waits.
func (c *conn) holdLogin(wait time.Duration, h *heldLogin) {
	countError("login_auth_delay")
	c.srv.stats.authDelays.Add(1)
	c.login.held = h
	c.login.holdC = time.After(wait)
}

// resumeLogin runs the step or sends the refusal holdLogin parked.
func (c *conn) resumeLogin() error {
	h := c.login.held
	c.login.held, c.login.holdC = nil, nil
	if h == nil {
		return nil
	}
	if h.fail != nil {
		return c.loginFail(h.fail)
	}
	return c.loginStep(h.step, h.csg, true)
}

// loginStep runs one complete Login Request through the negotiator and
// answers it. chapChecked says the step carries a CHAP response the
// authGuard admitted.
func (c *conn) loginStep(step LoginStep, csg uint8, chapChecked bool) error {
	ls := &c.login
	reply, lerr := ls.neg.Step(step)
	if chapChecked {
		name := ls.neg.params.InitiatorName
		if ls.neg.chap.state == chapDone {
			// The secret was proven, whatever else the step got wrong.
			c.srv.auth.succeeded(name, c.src)
		} else if lerr != nil && lerr.Status() == StatusAuthenticationFailure {
			c.srv.stats.authFailures.Add(1)
			ls.refusalLogged = true
			countError("login_chap_failed")
			// RFC 7143 11.13.5: 0x0201 "Authentication failure", after
			// the delay that makes guessing slow.
			if d := c.srv.auth.failed(name, c.src, ls.neg.params.TargetName, lerr.Reason, time.Now()); d > 0 {
				c.holdLogin(d, &heldLogin{fail: lerr})
				return nil
			}
			return c.loginFail(lerr)
		}
	}
	if lerr != nil {
		countError("login_refused")
		if lerr.Status() == StatusAuthenticationFailure {
			c.srv.stats.authFailures.Add(1)
		}
		return c.loginFail(lerr)
	}
	ls.csg = csg
	ls.reply = reply
	ls.final = reply.Transit && reply.NSG == StageFullFeature
	if ls.final {
		params := ls.neg.Params()
		if params.InitiatorName == "" {
			// RFC 7143 13.8: InitiatorName MUST be sent in the first login.
			return c.loginFail(loginErrMissing)
		}
		if params.SessionType == SessionNormal && params.Target == nil {
			return c.loginFail(loginErrNotFound)
		}
		se, lerr := c.srv.bindSession(c, params, ls.isid)
		if lerr != nil {
			return c.loginFail(lerr)
		}
		c.sess = se
		c.setParams(params)
		lvl := slog.LevelInfo
		if params.SessionType == SessionDiscovery {
			lvl = slog.LevelDebug // initiators poll discovery; only sessions that reach data are news
		}
		c.srv.log.Log(context.Background(), lvl, "iscsi login", "initiator", params.InitiatorName,
			"source", c.nc.RemoteAddr().String(), "target", params.TargetName, "type", params.SessionType.String(),
			"isid", fmt.Sprintf("%012x", ls.isid[:]), "tsih", se.tsih, "chap", ls.neg.auth != nil)
	}
	ls.out = EncodeText(reply.Keys)
	ls.outOff = 0
	return c.sendLoginChunk()
}

// sendLoginChunk sends the next piece of the pending response text; text
// beyond 8192 bytes is split with the C bit (RFC 7143 11.13.2).
func (c *conn) sendLoginChunk() error {
	ls := &c.login
	rest := len(ls.out) - ls.outOff
	n := min(rest, loginMaxSegment)
	last := n == rest
	var data []byte
	var buf *pbuf
	if n > 0 {
		buf = c.pool.get(n)
		copy(buf.b, ls.out[ls.outOff:ls.outOff+n])
		data = buf.b
	}
	ls.outOff += n
	r := &LoginResp{
		Continue:   !last,
		CSG:        ls.csg,
		VersionMax: iscsiVersion, VersionActive: iscsiVersion,
		ISID: ls.isid, TSIH: ls.tsih, ITT: ls.itt,
		StatSN: c.takeStatSN(), ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN,
		Data: data,
	}
	if last && ls.reply.Transit {
		r.Transit = true
		r.NSG = uint8(ls.reply.NSG)
	}
	it := outItem{pdu: r, buf: buf}
	if last {
		ls.out, ls.outOff = ls.out[:0], 0
		if ls.final {
			r.TSIH = c.sess.tsih
			// RFC 7143 13.1: digests are in force from the first PDU after
			// the final Login Response.
			it.digestsOn = true
			it.hdrDigest, it.dataDigest = c.params.HeaderDigest, c.params.DataDigest
			c.pr.hdrDigest, c.pr.dataDigest = c.params.HeaderDigest, c.params.DataDigest
			c.pr.maxData = int(c.params.TargetMaxRecvDataSegmentLength)
			// The full-size read buffer from now on. The initiator sends
			// nothing before it has this Login Response, so the small
			// buffer is empty; if it is not, it stays.
			if br, ok := c.pr.r.(*bufio.Reader); ok && br.Buffered() == 0 {
				c.pr.r = bufio.NewReaderSize(c.nc, readBufSize)
			}
			c.full = true
			c.srv.loggedIn(c)
		}
	}
	c.push(it)
	return nil
}

func (c *conn) loginFail(e *LoginError) error {
	c.srv.stats.loginRefusals.Add(1)
	if !c.login.refusalLogged {
		c.logRefusal(e)
	}
	c.push(outItem{pdu: &LoginResp{
		VersionMax: iscsiVersion, VersionActive: iscsiVersion,
		ISID: c.login.isid, TSIH: c.login.tsih, ITT: c.login.itt,
		StatSN: c.takeStatSN(), ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN,
		StatusClass: e.Class, StatusDetail: e.Detail,
	}})
	// RFC 7143 11.13.5: after a status class other than 0 the target
	// closes the connection.
	return errCloseAfterFlush
}

// logRefusal logs a login refusal with who was refused, once per source,
// initiator and status per logLimitEvery: at WARN when it is about
// access (authentication, authorization, a resource cap), else at INFO.
func (c *conn) logRefusal(e *LoginError) {
	var initiator, target string
	if n := c.login.neg; n != nil {
		initiator, target = n.params.InitiatorName, n.params.TargetName
	}
	lvl := slog.LevelInfo
	switch e.Status() {
	case StatusAuthenticationFailure, StatusAuthorizationFailure, StatusOutOfResources:
		lvl = slog.LevelWarn
	}
	status := fmt.Sprintf("%04x", uint16(e.Status()))
	c.srv.logLimited(lvl, "login "+status+" "+c.src+" "+strings.ToLower(initiator), "iscsi login refused",
		"initiator", initiator, "source", c.nc.RemoteAddr().String(), "target", target,
		"status", status, "reason", e.Reason)
}

// setParams applies the negotiated parameters, filling the RFC 7143
// section 13 defaults for anything left zero.
func (c *conn) setParams(p SessionParams) {
	op := DefaultOperational()
	if p.Target != nil {
		op = p.Target.Op
	}
	op = withOpDefaults(op)
	c.op = op
	if p.MaxRecvDataSegmentLength == 0 {
		p.MaxRecvDataSegmentLength = 8192 // RFC 7143 13.12 default
	}
	if p.TargetMaxRecvDataSegmentLength == 0 {
		p.TargetMaxRecvDataSegmentLength = max(op.MaxRecvDataSegmentLength, 8192)
	}
	if p.MaxBurstLength == 0 {
		p.MaxBurstLength = 262144 // RFC 7143 13.13
	}
	if p.FirstBurstLength == 0 {
		p.FirstBurstLength = 65536 // RFC 7143 13.14
	}
	p.FirstBurstLength = min(p.FirstBurstLength, p.MaxBurstLength)
	if p.MaxOutstandingR2T == 0 {
		p.MaxOutstandingR2T = 1
	}
	if p.DefaultTime2Wait == 0 && p.DefaultTime2Retain == 0 {
		p.DefaultTime2Wait, p.DefaultTime2Retain = op.DefaultTime2Wait, op.DefaultTime2Retain
	}
	c.params = p
	c.maxSend = int(p.MaxRecvDataSegmentLength)
	if op.MaxXmitDataSegmentLength > 0 {
		c.maxSend = min(c.maxSend, int(op.MaxXmitDataSegmentLength))
	}
	c.depth = op.CmdSNDepth
	// Made now rather than at accept, so that a connection still logging
	// in holds no room for tasks (2 x 33 KiB at the largest depth). Enough
	// room that a worker never blocks: at most depth + immediate tasks
	// exist, and depth is capped at maxCmdSNDepth.
	c.doneCh = make(chan *task, c.depth+maxImmediateTasks+1)
	c.workCh = make(chan *task, c.depth+maxImmediateTasks+1)
	c.updateWindow()
	c.lastRecv = time.Now()
}
