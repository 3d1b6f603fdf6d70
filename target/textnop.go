package target

// textState is an in-progress Text exchange (RFC 7143 11.10, 11.11).
type textState struct {
	in     []byte // joined request text while the initiator continues (C bit)
	itt    uint32
	ttt    uint32 // TTT of our continued response
	out    []byte // response text still to send
	active bool
}

func (c *conn) handleTextReq(p *TextReq, bhs *[bhsLen]byte) error {
	return c.handleOrdered(p.Immediate, p.CmdSN, p, bhs)
}

func (c *conn) textInOrder(p *TextReq, _ *[bhsLen]byte) error {
	ts := &c.text
	if p.TTT != reservedTag {
		// RFC 7143 11.10.4: a TTT other than 0xffffffff continues a
		// response the target split; it must be the one we sent.
		if !ts.active || p.TTT != ts.ttt || p.ITT != ts.itt {
			countError("text_bad_ttt")
			return &TaskError{ITT: p.ITT, Reason: RejectInvalidField, Msg: "Text Request with unknown TTT"}
		}
		return c.sendTextChunk()
	}
	if ts.active && ts.itt != p.ITT {
		// A new exchange resets an abandoned one (RFC 7143 11.10.4: TTT
		// 0xffffffff starts a new request).
		ts.out, ts.in = nil, ts.in[:0]
	}
	ts.itt = p.ITT
	if len(ts.in)+len(p.Data) > maxLoginText {
		countError("text_too_long")
		return &TaskError{ITT: p.ITT, Reason: RejectProtocolError, Msg: "text request too long"}
	}
	ts.in = append(ts.in, p.Data...)
	if p.Continue {
		// RFC 7143 11.10.2: the target answers a C=1 request with an empty
		// Text Response and waits for the rest.
		ts.active = true
		ts.ttt = c.newTTT()
		c.push(outItem{pdu: &TextResp{ITT: p.ITT, TTT: ts.ttt, LUN: p.LUN, StatSN: c.takeStatSN(),
			ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN}})
		return nil
	}
	kvs, err := ParseText(ts.in)
	ts.in = ts.in[:0]
	if err != nil {
		countError("text_parse")
		return &TaskError{ITT: p.ITT, Reason: RejectProtocolError, Msg: err.Error()}
	}
	var out []KeyValue
	for _, kv := range kvs {
		switch kv.Key {
		case "SendTargets":
			targets := c.srv.targetList()
			if c.params.SessionType == SessionNormal {
				// RFC 7143 Appendix C: in a normal session SendTargets
				// reports only the session's own target.
				targets = nil
				if t := c.srv.lookupTarget(c.params.TargetName); t != nil {
					targets = []*Target{t}
				}
			}
			out = append(out, SendTargets(targets, c.params.InitiatorName, kv.Value, localIP(c.nc))...)
		default:
			// RFC 7143 6.2.1: unknown keys are answered NotUnderstood.
			out = append(out, KeyValue{Key: kv.Key, Value: "NotUnderstood"})
		}
	}
	ts.out = EncodeText(out)
	ts.active = true
	ts.ttt = c.newTTT()
	return c.sendTextChunk()
}

// sendTextChunk sends the next piece of a response; the initiator's
// MaxRecvDataSegmentLength bounds each PDU (RFC 7143 11.11.2 C bit).
func (c *conn) sendTextChunk() error {
	ts := &c.text
	n := min(len(ts.out), c.maxSend)
	last := n == len(ts.out)
	var buf *pbuf
	var data []byte
	if n > 0 {
		buf = c.pool.get(n)
		copy(buf.b, ts.out[:n])
		data = buf.b
	}
	ts.out = ts.out[n:]
	r := &TextResp{ITT: ts.itt, Final: last, Continue: !last, StatSN: c.takeStatSN(),
		ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN, Data: data, TTT: ts.ttt}
	if last {
		// RFC 7143 11.11.4: the last response of an exchange has TTT
		// 0xffffffff.
		r.TTT = reservedTag
		ts.active = false
		ts.out = nil
	}
	c.push(outItem{pdu: r, buf: buf})
	return nil
}

func (c *conn) handleNopOut(p *NopOut, bhs *[bhsLen]byte) error {
	if p.ITT == reservedTag {
		// RFC 7143 11.18: ITT 0xffffffff means no reply is wanted; "the I
		// bit MUST be set to 1". A TTT other than 0xffffffff answers our
		// NOP-In ping.
		if !p.Immediate {
			countError("nopout_reserved_itt_not_immediate")
			return &TaskError{ITT: p.ITT, Reason: RejectProtocolError, Msg: "NOP-Out with ITT 0xffffffff must be immediate"}
		}
		if p.TTT != reservedTag && c.nopPending && p.TTT == c.nopTTT {
			c.nopPending = false
		}
		return nil
	}
	return c.handleOrdered(p.Immediate, p.CmdSN, p, bhs)
}

func (c *conn) nopInOrder(p *NopOut) error {
	// RFC 7143 11.18.2: a ping carries TTT 0xffffffff when it is not an
	// answer to a NOP-In.
	if p.TTT != reservedTag && !(c.nopPending && p.TTT == c.nopTTT) {
		countError("nopout_bad_ttt")
		return &TaskError{ITT: p.ITT, Reason: RejectInvalidField, Msg: "NOP-Out with unknown TTT"}
	}
	if p.TTT != reservedTag {
		c.nopPending = false
	}
	// RFC 7143 11.19.1: the NOP-In echoes the ping data, up to the
	// initiator's MaxRecvDataSegmentLength.
	var buf *pbuf
	var data []byte
	if n := min(len(p.Data), c.maxSend); n > 0 {
		buf = c.pool.get(n)
		copy(buf.b, p.Data)
		data = buf.b
	}
	c.push(outItem{pdu: &NopIn{LUN: p.LUN, ITT: p.ITT, TTT: reservedTag, StatSN: c.takeStatSN(),
		ExpCmdSN: c.expCmdSN, MaxCmdSN: c.maxCmdSN, Data: data}, buf: buf})
	return nil
}

func (c *conn) handleLogout(p *LogoutReq, bhs *[bhsLen]byte) error {
	return c.handleOrdered(p.Immediate, p.CmdSN, p, bhs)
}

func (c *conn) logoutInOrder(p *LogoutReq) error {
	resp := &LogoutResp{ITT: p.ITT}
	closeAfter := false
	switch p.Reason {
	case logoutCloseSession, logoutCloseConnection:
		if p.Reason == logoutCloseConnection && p.CID != c.login.cid {
			// RFC 7143 11.15.1: 1 "CID not found".
			resp.Response = logoutRespCIDNotFound
			break
		}
		// RFC 7143 11.14.1: closing the session (or its only connection)
		// terminates its outstanding tasks.
		for _, t := range c.tasks {
			c.abortTask(t, &tmfWait{})
		}
		resp.Response = logoutRespOK
		closeAfter = true
	case logoutRemoveForRecov:
		// RFC 7143 11.15.1: 2 "connection recovery is not supported" at
		// ErrorRecoveryLevel < 2.
		resp.Response = logoutRespNoRecovery
	default:
		countError("logout_bad_reason")
		return &TaskError{ITT: p.ITT, Reason: RejectInvalidField, Msg: "unknown logout reason"}
	}
	// RFC 7143 11.15.2/11.15.3: Time2Wait and Time2Retain from the session.
	resp.Time2Wait = uint16(min(c.params.DefaultTime2Wait, 3600))
	resp.Time2Retain = uint16(min(c.params.DefaultTime2Retain, 20))
	resp.StatSN = c.takeStatSN()
	resp.ExpCmdSN, resp.MaxCmdSN = c.expCmdSN, c.maxCmdSN
	if closeAfter {
		// Sent by serve once the session has ended.
		c.logoutResp = resp
		return errLogoutSession
	}
	c.push(outItem{pdu: resp})
	return nil
}
