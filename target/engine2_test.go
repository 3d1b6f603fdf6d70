package target

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestR2TSmallBurst(t *testing.T) {
	env := startServer(t, func(op *Operational) { op.MaxBurstLength = 4096; op.FirstBurstLength = 4096 })
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"MaxBurstLength": "4096", "FirstBurstLength": "4096", "ImmediateData": "No"}})
	if i.maxBurst != 4096 {
		t.Fatalf("negotiated MaxBurstLength %d (keys %v)", i.maxBurst, i.keys)
	}
	data := pattern(64*512, 9)
	res := i.cmd(cdbWrite10(100, 64), uint32(len(data)), false, data, cmdOpts{})
	if res.status != 0 {
		t.Fatalf("write status %d", res.status)
	}
	if res.r2ts != len(data)/4096 {
		t.Fatalf("%d R2Ts, want %d", res.r2ts, len(data)/4096)
	}
	if res.expDataSN != uint32(res.r2ts) {
		t.Fatalf("ExpDataSN %d, want %d", res.expDataSN, res.r2ts)
	}
	rd := i.cmd(cdbRead10(100, 64), uint32(len(data)), true, nil, cmdOpts{})
	if !bytes.Equal(rd.data, data) {
		t.Fatal("read back differs")
	}
	// Data-In sequences end at MaxBurstLength boundaries (F bit per burst).
	if rd.finals != len(data)/4096 {
		t.Fatalf("%d F bits, want %d", rd.finals, len(data)/4096)
	}
}

func TestUnsolicitedData(t *testing.T) {
	env := startServer(t, func(op *Operational) { op.InitialR2T = false; op.FirstBurstLength = 8192 })
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"InitialR2T": "No", "FirstBurstLength": "8192", "MaxRecvDataSegmentLength": "4096"}})
	if i.initR2T {
		t.Skipf("target kept InitialR2T=Yes (%v)", i.keys)
	}
	data := pattern(32*512, 1)
	res := i.cmd(cdbWrite10(0, 32), uint32(len(data)), false, data, cmdOpts{})
	if res.status != 0 {
		t.Fatalf("status %d", res.status)
	}
	rd := i.cmd(cdbRead10(0, 32), uint32(len(data)), true, nil, cmdOpts{})
	if !bytes.Equal(rd.data, data) {
		t.Fatal("read back differs")
	}
}

func TestDataInSplit(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"MaxRecvDataSegmentLength": "1024"}})
	res := i.cmd(cdbRead10(0, 16), 16*512, true, nil, cmdOpts{})
	if res.status != 0 || len(res.data) != 8192 || res.dataIns != 8 || res.maxDataSeg != 1024 {
		t.Fatalf("split: status %d len %d pdus %d maxseg %d", res.status, len(res.data), res.dataIns, res.maxDataSeg)
	}
}

func TestResiduals(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{})
	// Underflow: EDTL bigger than the command transfers.
	res := i.cmd(cdbRead10(0, 1), 2048, true, nil, cmdOpts{})
	if res.status != 0 || !res.under || res.over || res.residual != 1536 || len(res.data) != 512 {
		t.Fatalf("underflow: %+v", res)
	}
	// Overflow: EDTL smaller than the command transfers; only EDTL bytes move.
	res = i.cmd(cdbRead10(0, 4), 1024, true, nil, cmdOpts{})
	if !res.over || res.under || res.residual != 1024 || len(res.data) != 1024 {
		t.Fatalf("overflow: %+v", res)
	}
	// Zero EDTL read of one block: all overflow, no Data-In.
	res = i.cmd(cdbRead10(0, 1), 0, true, nil, cmdOpts{})
	if !res.over || res.residual != 512 || res.dataIns != 0 {
		t.Fatalf("zero EDTL: %+v", res)
	}
	// Write with EDTL < CDB length: only EDTL bytes are collected.
	data := pattern(1024, 5)
	res = i.cmd(cdbWrite10(50, 4), 1024, false, data, cmdOpts{})
	if !res.over || res.residual != 1024 {
		t.Fatalf("write overflow: %+v", res)
	}
	// Write with EDTL > CDB length.
	data = pattern(2048, 6)
	res = i.cmd(cdbWrite10(60, 1), 2048, false, data, cmdOpts{})
	if !res.under || res.residual != 1536 {
		t.Fatalf("write underflow: %+v", res)
	}
	// CHECK CONDITION: sense in the response with its length prefix.
	res = i.cmd([]byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, false, nil, cmdOpts{})
	if res.status != 2 || len(res.sense) != 18 || res.sense[2] != 5 || res.sense[12] != 0x20 {
		t.Fatalf("sense: %+v", res)
	}
}

func TestCmdSNWindow(t *testing.T) {
	env := startServer(t, func(op *Operational) { op.CmdSNDepth = 4 })
	i := dial(t, env.addr)
	r := i.login(loginOpts{})
	if r.MaxCmdSN-r.ExpCmdSN+1 != 4 {
		t.Fatalf("window %d..%d", r.ExpCmdSN, r.MaxCmdSN)
	}
	// CmdSN beyond MaxCmdSN is silently ignored (RFC 7143 3.2.2.1).
	i.send(&SCSICmd{Final: true, ITT: 0x900, CmdSN: r.MaxCmdSN + 1, CDB: make([]byte, 6)})
	i.expectSilence(200 * time.Millisecond)
	// So is one below ExpCmdSN.
	i.send(&SCSICmd{Final: true, ITT: 0x901, CmdSN: r.ExpCmdSN - 1, CDB: make([]byte, 6)})
	i.expectSilence(200 * time.Millisecond)
	// Commands delivered out of order are executed in CmdSN order: send
	// CmdSN+1 first, nothing happens until CmdSN arrives.
	sn := i.cmdSN
	i.send(&SCSICmd{Final: true, ITT: 0x902, CmdSN: sn + 1, CDB: make([]byte, 6)})
	i.expectSilence(200 * time.Millisecond)
	i.send(&SCSICmd{Final: true, ITT: 0x903, CmdSN: sn, CDB: make([]byte, 6)})
	got := map[uint32]bool{}
	var last *SCSIResp
	for len(got) < 2 {
		p := i.recv().(*SCSIResp)
		got[p.ITT] = true
		last = p
	}
	if !got[0x902] || !got[0x903] || last.ExpCmdSN != sn+2 {
		t.Fatalf("responses %v, ExpCmdSN %d want %d", got, last.ExpCmdSN, sn+2)
	}
	i.cmdSN = sn + 2
	// Window bounds in-flight commands: with 4 slow commands in flight
	// MaxCmdSN does not move past ExpCmdSN+3 of the oldest.
	env.router.delay.Store(int64(300 * time.Millisecond))
	var itts []uint32
	for k := 0; k < 4; k++ {
		itts = append(itts, i.startCmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{}))
	}
	// A NOP ping shows the window closed.
	i.send(&NopOut{Immediate: true, ITT: 0x777, TTT: reservedTag, CmdSN: i.cmdSN})
	nop := i.recv().(*NopIn)
	if nop.MaxCmdSN != i.cmdSN-1 {
		t.Fatalf("MaxCmdSN %d with 4 in flight, ExpCmdSN %d", nop.MaxCmdSN, nop.ExpCmdSN)
	}
	for range itts {
		i.recv()
	}
}

func TestConcurrentSlowCommands(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{})
	env.router.delay.Store(int64(200 * time.Millisecond))
	start := time.Now()
	const n = 16
	for k := 0; k < n; k++ {
		i.startCmd(cdbRead10(uint32(k), 1), 512, true, nil, cmdOpts{})
	}
	for k := 0; k < n; k++ {
		p := i.recv()
		if d, ok := p.(*DataIn); !ok || !d.HasStatus {
			t.Fatalf("got %T", p)
		}
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("%d slow commands took %v: serialized", n, el)
	}
	if env.router.peak.Load() < 8 {
		t.Fatalf("peak concurrency %d", env.router.peak.Load())
	}
}

func TestAbortTask(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{})
	env.router.delay.Store(int64(5 * time.Second))
	itt := i.startCmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{})
	time.Sleep(50 * time.Millisecond)
	i.send(&TaskMgmtReq{Immediate: true, Function: tmfAbortTask, ITT: 0x5000, RefTaskTag: itt, CmdSN: i.cmdSN, RefCmdSN: i.cmdSN - 1})
	r := i.recv()
	tm, ok := r.(*TaskMgmtResp)
	if !ok || tm.ITT != 0x5000 || tm.Response != tmfRespComplete {
		t.Fatalf("abort: %T %+v", r, r)
	}
	// The aborted command's response is never sent; the next command works.
	env.router.delay.Store(0)
	res := i.cmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{})
	if res.status != 0 {
		t.Fatalf("after abort: %+v", res)
	}
	// Unknown task, RefCmdSN outside the window: task does not exist.
	i.send(&TaskMgmtReq{Immediate: true, Function: tmfAbortTask, ITT: 0x5001, RefTaskTag: 0xabc, CmdSN: i.cmdSN, RefCmdSN: i.cmdSN - 100})
	if tm := i.recv().(*TaskMgmtResp); tm.Response != tmfRespNoTask {
		t.Fatalf("abort of unknown task: %d", tm.Response)
	}
	// LU reset reaches the device server.
	i.send(&TaskMgmtReq{Immediate: true, Function: tmfLogicalUnitReset, ITT: 0x5002, RefTaskTag: reservedTag, CmdSN: i.cmdSN})
	if tm := i.recv().(*TaskMgmtResp); tm.Response != tmfRespComplete || env.router.tmfs.Load() != 1 {
		t.Fatalf("LU reset: %d, router saw %d", tm.Response, env.router.tmfs.Load())
	}
	i.send(&TaskMgmtReq{Immediate: true, Function: tmfTaskReassign, ITT: 0x5003, RefTaskTag: 1, CmdSN: i.cmdSN})
	if tm := i.recv().(*TaskMgmtResp); tm.Response != tmfRespNoReassignSupport {
		t.Fatalf("reassign: %d", tm.Response)
	}
}

func TestNopPingAndTimeout(t *testing.T) {
	env := startServer(t, func(op *Operational) {
		op.NopInInterval = 100 * time.Millisecond
		op.NopInTimeout = 200 * time.Millisecond
	})
	i := dial(t, env.addr)
	i.login(loginOpts{})
	// Initiator ping: echoed.
	i.send(&NopOut{Immediate: true, ITT: 0x42, TTT: reservedTag, CmdSN: i.cmdSN, Data: []byte("hello")})
	for {
		p := i.recv().(*NopIn)
		if p.ITT == 0x42 {
			if string(p.Data) != "hello" || p.TTT != reservedTag {
				t.Fatalf("echo %+v", p)
			}
			break
		}
	}
	// Target ping: answer it and stay connected.
	p := i.recv().(*NopIn)
	if p.ITT != reservedTag || p.TTT == reservedTag {
		t.Fatalf("target ping %+v", p)
	}
	i.send(&NopOut{Immediate: true, ITT: reservedTag, TTT: p.TTT, CmdSN: i.cmdSN})
	// Now go silent: the target drops us after NopInTimeout.
	i.expectClosed(3 * time.Second)
	if c := ErrorCounts()["nopin_timeout"]; c == 0 {
		t.Fatal("nopin_timeout not counted")
	}
}

func TestMalformedPDUs(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{})
	// Unknown opcode: Reject "command not supported" with the header.
	bad := AppendPDU(nil, &NopOut{Immediate: true, ITT: 0x99, TTT: reservedTag}, false, false)
	bad[0] = 0x1d
	i.nc.Write(bad)
	rj := i.recv().(*Reject)
	if rj.Reason != RejectNotSupported || !bytes.Equal(rj.Data, bad[:48]) {
		t.Fatalf("reject %+v", rj)
	}
	// SNACK at ERL 0 is rejected.
	i.send(&SNACKReq{Type: 0, ITT: 1})
	if rj := i.recv().(*Reject); rj.Reason != RejectProtocolError {
		t.Fatalf("snack reject %d", rj.Reason)
	}
	// The session still works.
	if res := i.cmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{}); res.status != 0 {
		t.Fatal("session broken after rejects")
	}
	// A panicking device server answers CHECK CONDITION and survives.
	res := i.cmd([]byte{0xff, 0, 0, 0, 0, 0}, 0, false, nil, cmdOpts{})
	if res.status != 2 || res.sense[12] != 0x44 {
		t.Fatalf("panic: %+v", res)
	}
	// DataSegmentLength beyond the declared MaxRecvDataSegmentLength drops
	// the connection.
	h := AppendPDU(nil, &NopOut{Immediate: true, ITT: 0x98, TTT: reservedTag}, false, false)
	h[5], h[6], h[7] = 0x10, 0, 0 // 1 MiB
	i.nc.Write(h)
	i.expectClosed(2 * time.Second)

	// Truncated PDU then close: the server survives and serves others.
	j := dial(t, env.addr)
	j.nc.Write(bad[:20])
	j.nc.Close()
	k := dial(t, env.addr)
	if r := k.login(loginOpts{isid: 2}); r.StatusClass != 0 {
		t.Fatalf("login after garbage: %d", r.StatusClass)
	}
}

func TestDigestBadCRC(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"}})
	if !i.hd || !i.dd {
		t.Fatalf("digests not negotiated: %v", i.keys)
	}
	data := pattern(4096, 2)
	if res := i.cmd(cdbWrite10(0, 8), 4096, false, data, cmdOpts{}); res.status != 0 {
		t.Fatalf("write with digests: %+v", res)
	}
	if res := i.cmd(cdbRead10(0, 8), 4096, true, nil, cmdOpts{}); !bytes.Equal(res.data, data) {
		t.Fatal("read with digests differs")
	}
	w := AppendPDU(nil, &NopOut{Immediate: true, ITT: 7, TTT: reservedTag, Data: []byte("abcd")}, true, true)
	w[len(w)-1] ^= 0xff
	i.nc.Write(w)
	i.expectClosed(2 * time.Second)
}

func TestDiscoverySendTargets(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	r := i.login(loginOpts{discovery: true})
	if r.StatusClass != 0 {
		t.Fatalf("discovery login %d/%d", r.StatusClass, r.StatusDetail)
	}
	i.send(&TextReq{Immediate: true, Final: true, ITT: 0x60, TTT: reservedTag, CmdSN: i.cmdSN, Data: []byte("SendTargets=All\x00Foo=bar\x00")})
	tr := i.recv().(*TextResp)
	s := string(tr.Data)
	if !tr.Final || tr.TTT != reservedTag || !strings.Contains(s, "TargetName="+engineIQN) || !strings.Contains(s, "Foo=NotUnderstood") {
		t.Fatalf("text response %q", s)
	}
	// Only Text and Logout in discovery sessions.
	i.send(&SCSICmd{Final: true, ITT: 0x61, CmdSN: i.cmdSN, CDB: make([]byte, 6)})
	if rj := i.recv().(*Reject); rj.Reason != RejectProtocolError {
		t.Fatalf("scsi in discovery: %d", rj.Reason)
	}
	if lr := i.logout(); lr.Response != 0 {
		t.Fatalf("logout %d", lr.Response)
	}
}

func TestTextContinuation(t *testing.T) {
	env := startServer(t, nil)
	var ts []*Target
	for k := 0; k < 200; k++ {
		tg := *env.tgt
		tg.Name = engineIQN + "-" + strings.Repeat("x", 20) + string(rune('a'+k%26)) + string(rune('a'+k/26))
		ts = append(ts, &tg)
	}
	env.srv.SetTargets(append(ts, env.tgt))
	i := dial(t, env.addr)
	i.login(loginOpts{discovery: true, keys: map[string]string{"MaxRecvDataSegmentLength": "512"}})
	i.send(&TextReq{Immediate: true, Final: true, ITT: 0x70, TTT: reservedTag, CmdSN: i.cmdSN, Data: []byte("SendTargets=All\x00")})
	var all []byte
	for n := 0; ; n++ {
		tr := i.recv().(*TextResp)
		if len(tr.Data) > 512 {
			t.Fatalf("text PDU of %d bytes beyond MRDSL", len(tr.Data))
		}
		all = append(all, tr.Data...)
		if tr.Final {
			if tr.TTT != reservedTag || n == 0 {
				t.Fatalf("final TTT %#x after %d", tr.TTT, n)
			}
			break
		}
		if !tr.Continue || tr.TTT == reservedTag {
			t.Fatalf("continuation flags %+v", tr)
		}
		i.send(&TextReq{Immediate: true, Final: true, ITT: 0x70, TTT: tr.TTT, CmdSN: i.cmdSN})
	}
	if strings.Count(string(all), "TargetName=") != 201 {
		t.Fatalf("%d targets", strings.Count(string(all), "TargetName="))
	}
}

func TestLoginTSIHAndReinstatement(t *testing.T) {
	env := startServer(t, nil)
	// Unknown TSIH: session does not exist (0x020A).
	i := dial(t, env.addr)
	if r := i.login(loginOpts{tsih: 0x4242}); r.StatusClass != 2 || r.StatusDetail != 0x0a {
		t.Fatalf("unknown TSIH: %d/%d", r.StatusClass, r.StatusDetail)
	}
	a := dial(t, env.addr)
	ra := a.login(loginOpts{isid: 7})
	// A second connection to the session: too many connections.
	b := dial(t, env.addr)
	if r := b.login(loginOpts{isid: 7, tsih: ra.TSIH}); r.StatusClass != 2 || r.StatusDetail != 6 {
		t.Fatalf("second connection: %d/%d", r.StatusClass, r.StatusDetail)
	}
	// Several sessions per initiator (other ISID).
	c := dial(t, env.addr)
	c.login(loginOpts{isid: 8})
	if n := len(env.srv.Sessions()); n != 2 {
		t.Fatalf("%d sessions", n)
	}
	// Reinstatement: same initiator+ISID+target with TSIH 0 replaces a.
	env.router.delay.Store(int64(5 * time.Second))
	a.startCmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{})
	time.Sleep(50 * time.Millisecond)
	d := dial(t, env.addr)
	rd := d.login(loginOpts{isid: 7})
	if rd.StatusClass != 0 || rd.TSIH == ra.TSIH {
		t.Fatalf("reinstatement: %d tsih %d old %d", rd.StatusClass, rd.TSIH, ra.TSIH)
	}
	a.expectClosed(2 * time.Second)
	env.router.delay.Store(0)
	if res := d.cmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{}); res.status != 0 {
		t.Fatal("reinstated session broken")
	}
	if n := len(env.srv.Sessions()); n != 2 {
		t.Fatalf("%d sessions after reinstatement", n)
	}
	if env.router.lost.Load() == 0 {
		t.Fatal("NexusLost not called for the old session")
	}
}

func TestLoginVersionAndContinuation(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.send(&LoginReq{Transit: true, CSG: 1, NSG: 3, VersionMin: 1, VersionMax: 2, ISID: [6]byte{0x80}, ITT: 1, CmdSN: 1})
	if r := i.recv().(*LoginResp); r.StatusClass != 2 || r.StatusDetail != 5 {
		t.Fatalf("version: %d/%d", r.StatusClass, r.StatusDetail)
	}
	// Request text split with the C bit.
	j := dial(t, env.addr)
	text := encodeKeys(map[string]string{"InitiatorName": "iqn.2026-01.io.rbdgw:ini", "TargetName": engineIQN, "SessionType": "Normal"}, keyOrder)
	isid := [6]byte{0x80, 0, 0, 0, 0, 9}
	j.send(&LoginReq{Continue: true, CSG: 1, NSG: 0, ISID: isid, ITT: 1, CmdSN: 1, Data: text[:10]})
	r := j.recv().(*LoginResp)
	if r.StatusClass != 0 || len(r.Data) != 0 || r.Transit {
		t.Fatalf("continuation ack %+v", r)
	}
	j.send(&LoginReq{Transit: true, CSG: 1, NSG: 3, ISID: isid, ITT: 1, CmdSN: 1, ExpStatSN: r.StatSN + 1, Data: text[10:]})
	for {
		r = j.recv().(*LoginResp)
		if r.StatusClass != 0 {
			t.Fatalf("login after continuation: %d/%d", r.StatusClass, r.StatusDetail)
		}
		if r.Transit && r.NSG == 3 {
			break
		}
		j.send(&LoginReq{Transit: true, CSG: 1, NSG: 3, ISID: isid, ITT: 1, CmdSN: 1, ExpStatSN: r.StatSN + 1})
	}
	if r.TSIH == 0 {
		t.Fatal("no TSIH")
	}
}

func TestShutdownAsyncLogout(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- env.srv.Shutdown(ctx)
	}()
	am := i.recv().(*AsyncMsg)
	if am.Event != asyncLogoutRequest || am.Param3 == 0 {
		t.Fatalf("async %+v", am)
	}
	if lr := i.logout(); lr.Response != 0 {
		t.Fatalf("logout %d", lr.Response)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestSetTargetsDropsSessions(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{})
	env.srv.SetTargets(nil)
	i.expectClosed(2 * time.Second)
	j := dial(t, env.addr)
	if r := j.login(loginOpts{}); r.StatusClass != 2 {
		t.Fatalf("login to removed target: %d/%d", r.StatusClass, r.StatusDetail)
	}
}

func TestManySessionsParallel(t *testing.T) {
	env := startServer(t, nil)
	var wg sync.WaitGroup
	for s := 0; s < 4; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			i := dial(t, env.addr)
			i.login(loginOpts{isid: byte(20 + s)})
			buf := make([]byte, 4096)
			for k := 0; k < 50; k++ {
				binary.BigEndian.PutUint32(buf, uint32(s*1000+k))
				lba := uint32(s*100 + k%10*8)
				if r := i.cmd(cdbWrite10(lba, 8), 4096, false, buf, cmdOpts{}); r.status != 0 {
					t.Errorf("write %d", r.status)
					return
				}
				if r := i.cmd(cdbRead10(lba, 8), 4096, true, nil, cmdOpts{}); !bytes.Equal(r.data, buf) {
					t.Errorf("read back differs")
					return
				}
			}
			i.logout()
		}(s)
	}
	wg.Wait()
}

func TestAbortTaskRefCmdSNNotYetReceived(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	i.login(loginOpts{})
	sn := i.cmdSN
	// RFC 7143 11.5.1 (c): the referenced command has not arrived but its
	// CmdSN is in the window and below the TMF's: "Function complete", and
	// the CmdSN counts as received.
	// The TMF is immediate and carries the initiator's next CmdSN (sn+1:
	// the command with sn was "lost" on the way).
	i.send(&TaskMgmtReq{Immediate: true, Function: tmfAbortTask, ITT: 0x6000, RefTaskTag: 0x6001, CmdSN: sn + 1, RefCmdSN: sn})
	tm := i.recv().(*TaskMgmtResp)
	if tm.Response != tmfRespComplete || tm.ExpCmdSN != sn+1 {
		t.Fatalf("abort of unreceived task: resp %d ExpCmdSN %d want %d", tm.Response, tm.ExpCmdSN, sn+1)
	}
	// The late command is now below ExpCmdSN and ignored.
	i.send(&SCSICmd{Final: true, ITT: 0x6001, CmdSN: sn, CDB: make([]byte, 6)})
	i.expectSilence(200 * time.Millisecond)
	i.cmdSN = sn + 1
	if res := i.cmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{}); res.status != 0 {
		t.Fatal("session broken")
	}
}

// TestDataOutBadDataSN: a Data-Out with a DataSN out of order (RFC 7143 7.9,
// an implied digest error) fails its command with CHECK CONDITION once the
// sequence is complete, without writing; the connection stays usable (ERL 0,
// RFC 7143 7.8.2 option b). libiscsi's iSCSIDataSnInvalid sends these.
func TestDataOutBadDataSN(t *testing.T) {
	env := startServer(t, func(op *Operational) { op.InitialR2T = false })
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"ImmediateData": "No", "InitialR2T": "No"}})
	if i.initR2T {
		t.Fatalf("InitialR2T=No not negotiated: %v", i.keys)
	}
	old := pattern(2*512, 3)
	if res := i.cmd(cdbWrite10(100, 2), uint32(len(old)), false, old, cmdOpts{}); res.status != 0 {
		t.Fatalf("seed write: %+v", res)
	}
	bad := pattern(2*512, 4)
	i.initR2T = true // the helper sends no unsolicited data: every case gets an R2T
	cases := []struct {
		name    string
		blocks  int
		dataSNs []uint32
	}{
		{"both zero", 2, []uint32{0, 0}},
		{"27", 1, []uint32{27}},
		{"minus one", 1, []uint32{0xffffffff}},
		{"reversed", 2, []uint32{1, 0}},
	}
	for _, tc := range cases {
		n := tc.blocks * 512
		itt := i.startCmd(cdbWrite10(100, uint16(tc.blocks)), uint32(n), false, bad[:n], cmdOpts{noImmData: true})
		r2t, ok := i.recv().(*R2T)
		if !ok || r2t.ITT != itt || r2t.DesiredLength != uint32(n) {
			t.Fatalf("%s: want R2T for %d bytes, got %+v", tc.name, n, r2t)
		}
		for k, sn := range tc.dataSNs {
			i.send(&DataOut{Final: k == len(tc.dataSNs)-1, ITT: itt, TTT: r2t.TTT, ExpStatSN: i.expStatSN,
				DataSN: sn, BufferOffset: uint32(k * 512), Data: bad[k*512 : (k+1)*512]})
		}
		resp, ok := i.recv().(*SCSIResp)
		if !ok || resp.ITT != itt || resp.Status != 2 || len(resp.Data) < 2+14 {
			t.Fatalf("%s: want CHECK CONDITION, got %+v", tc.name, resp)
		}
		if s := resp.Data[2:]; s[2]&0xf != 0x0b || s[12] != 0x47 || s[13] != 0x05 {
			t.Fatalf("%s: sense % x, want ABORTED COMMAND 47/05", tc.name, s)
		}
	}
	// Unsolicited data with a bad DataSN fails the same way.
	i.initR2T = false
	itt := i.itt
	i.itt++
	i.send(&SCSICmd{Final: false, Write: true, Attr: 1, ITT: itt, EDTL: 1024, CmdSN: i.cmdSN, ExpStatSN: i.expStatSN, CDB: cdbWrite10(100, 2)})
	i.cmdSN++
	i.send(&DataOut{ITT: itt, TTT: reservedTag, DataSN: 5, BufferOffset: 0, Data: bad[:512]})
	i.send(&DataOut{Final: true, ITT: itt, TTT: reservedTag, DataSN: 6, BufferOffset: 512, Data: bad[512:1024]})
	if resp, ok := i.recv().(*SCSIResp); !ok || resp.ITT != itt || resp.Status != 2 {
		t.Fatalf("unsolicited: want CHECK CONDITION, got %+v", resp)
	}
	rd := i.cmd(cdbRead10(100, 2), 1024, true, nil, cmdOpts{})
	if rd.status != 0 || !bytes.Equal(rd.data, old) {
		t.Fatalf("data changed by failed writes (status %d)", rd.status)
	}
}

// TestPipelinedCommandsKeepTheirCDBs: the reader frames SCSI Commands and
// Data-Outs into reused structs (pduReader.reuse). With many more commands
// pipelined than the ring holds, each must still execute with its own CDB
// and data.
func TestPipelinedCommandsKeepTheirCDBs(t *testing.T) {
	env := startServer(t, func(op *Operational) { op.CmdSNDepth = 128 })
	i := dial(t, env.addr)
	i.login(loginOpts{})
	env.router.delay.Store(int64(20 * time.Millisecond))
	const n = 5 * readRing
	var itts []uint32
	var want [][]byte
	var b []byte
	for k := range n {
		d := pattern(1024, byte(k))
		want = append(want, d)
		itt := i.itt
		i.itt++
		c := &SCSICmd{Final: k%2 == 0, Write: true, Attr: 1, ITT: itt, EDTL: 1024, CmdSN: i.cmdSN,
			ExpStatSN: i.expStatSN, CDB: cdbWrite10(uint32(2*k), 2)}
		i.cmdSN++
		if k%2 == 0 {
			c.Data = d // all immediate
		} else {
			c.Data = d[:512] // half immediate, half solicited by an R2T
			c.Final = true
		}
		b = AppendPDU(b, c, i.hd, i.dd)
		itts = append(itts, itt)
	}
	if _, err := i.nc.Write(b); err != nil {
		t.Fatal(err)
	}
	done := 0
	for done < n {
		switch p := i.recv().(type) {
		case *R2T:
			k := int(p.ITT - itts[0])
			i.send(&DataOut{Final: true, ITT: p.ITT, TTT: p.TTT, ExpStatSN: i.expStatSN,
				BufferOffset: p.BufferOffset, Data: want[k][p.BufferOffset : p.BufferOffset+p.DesiredLength]})
		case *SCSIResp:
			if p.Status != 0 {
				t.Fatalf("ITT %#x status %d", p.ITT, p.Status)
			}
			done++
		default:
			t.Fatalf("unexpected %T", p)
		}
	}
	env.router.delay.Store(0)
	for k := range n {
		rd := i.cmd(cdbRead10(uint32(2*k), 2), 1024, true, nil, cmdOpts{})
		if !bytes.Equal(rd.data, want[k]) {
			t.Fatalf("command %d: data differs", k)
		}
	}
}

// A Logout that closes the session releases its nexus before the Logout
// Response leaves: an initiator that reserves from another session as
// soon as it reads the response must find the RESERVE(6) gone.
func TestLogoutReleasesTheNexusBeforeAnswering(t *testing.T) {
	env := startServer(t, nil)
	for n := 0; n < 20; n++ {
		i := dial(t, env.addr)
		if r := i.login(loginOpts{isid: 1}); r.StatusClass != 0 {
			t.Fatalf("login: class %d", r.StatusClass)
		}
		before := env.router.lost.Load()
		if r := i.logout(); r.Response != 0 {
			t.Fatalf("logout response %d", r.Response)
		}
		if env.router.lost.Load() == before {
			t.Fatalf("round %d: the Logout Response arrived before the nexus was released", n)
		}
		i.expectClosed(2 * time.Second)
	}
}
