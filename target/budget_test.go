package target

import (
	"net"
	"runtime"
	"testing"
	"time"
)

func startBudget(t *testing.T, lim Limits, blocks int) *testEnv {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startLimitedDisk(t, l, lim, nil, blocks)
}

// heapInUse is the live heap after two collections (the second one
// empties sync.Pool's victim cache).
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// sendDatalessWrite sends a WRITE(10) declaring edtl bytes and no data.
func (i *ini) sendDatalessWrite(itt, cmdSN uint32, lba uint32, edtl uint32) {
	i.send(&SCSICmd{Final: true, Write: true, Attr: 1, ITT: itt, EDTL: edtl, CmdSN: cmdSN, ExpStatSN: i.expStatSN,
		CDB: cdbWrite10(lba, uint16(edtl/512))})
}

// collectR2Ts reads until the target is quiet for quiet, returning the
// R2Ts seen by ITT.
func (i *ini) collectR2Ts(quiet time.Duration) map[uint32]*R2T {
	i.t.Helper()
	out := map[uint32]*R2T{}
	for {
		p, err := i.tryRecv(quiet)
		if err != nil {
			return out
		}
		r, ok := p.(*R2T)
		if !ok {
			i.t.Fatalf("got %T %+v while collecting R2Ts", p, p)
		}
		out[r.ITT] = r
	}
}

// answerR2T sends the data one R2T asks for and, when it completes the
// command, waits for its response.
func (i *ini) answerR2T(r *R2T, data []byte) {
	i.t.Helper()
	var dsn uint32
	for off, end := int(r.BufferOffset), int(r.BufferOffset+r.DesiredLength); off < end; dsn++ {
		n := min(end-off, i.mrdsl)
		i.send(&DataOut{Final: off+n == end, ITT: r.ITT, TTT: r.TTT, ExpStatSN: i.expStatSN,
			DataSN: dsn, BufferOffset: uint32(off), Data: data[off : off+n]})
		off += n
	}
}

// finishWrite answers r and the R2Ts that follow it until the command's
// response, the only command in flight on i.
func (i *ini) finishWrite(r *R2T, data []byte) *SCSIResp {
	i.t.Helper()
	for {
		i.answerR2T(r, data)
		switch p := i.recv().(type) {
		case *R2T:
			r = p
		case *SCSIResp:
			return p
		default:
			i.t.Fatalf("got %T %+v", p, p)
		}
	}
}

// Issue 8, attack 5: WRITEs declaring a large length and sending no data
// took the gateway from 58 MB to 3.6 GB, because each command's buffer of
// the declared length was allocated on arrival, and commands parked behind
// a missing CmdSN never timed out. Now write buffers are allocated when
// R2Ts solicit the data, under Limits.MaxDataPerSession; a parked command
// holds nothing, and the gap times out.
//
// Stated bound: 32 dataless WRITEs of 4 MiB (128 MiB declared, 16 of them
// behind a CmdSN gap) hold at most MaxDataPerSession = 8 MiB of buffers by
// the target's accounting, and the live heap grows by less than 8 MiB +
// 4 MiB of slack. The previous code allocated the 128 MiB.
func TestDataBudgetBoundsDatalessWrites(t *testing.T) {
	const (
		perSession = 8 << 20
		edtl       = 4 << 20
		cmds       = 32
	)
	env := startBudget(t, Limits{MaxDataPerSession: perSession, CmdSNGapTimeout: time.Minute}, 2*perSession/512)
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"ImmediateData": "No", "InitialR2T": "Yes", "MaxBurstLength": "524288"}})
	base := heapInUse()

	sn := i.cmdSN
	// Commands 0..15 in order; 17..32 beyond a gap at 16.
	for k := uint32(0); k < cmds; k++ {
		cmdSN := sn + k
		if k >= cmds/2 {
			cmdSN++
		}
		i.sendDatalessWrite(0x1000+k, cmdSN, (k%4)*edtl/512, edtl)
	}
	r2ts := i.collectR2Ts(300 * time.Millisecond)
	if len(r2ts) != perSession/edtl {
		t.Fatalf("%d commands solicited, want %d (the budget's worth)", len(r2ts), perSession/edtl)
	}
	st := env.srv.Stats()
	if st.DataBytes > perSession {
		t.Fatalf("target holds %d bytes of data buffers, bound %d", st.DataBytes, perSession)
	}
	if st.DataWaits < cmds/2-perSession/edtl {
		t.Fatalf("DataWaits %d", st.DataWaits)
	}
	if grew := heapInUse() - base; grew > perSession+4<<20 {
		t.Fatalf("live heap grew by %d MiB for %d MiB declared; bound %d MiB", grew>>20, cmds*edtl>>20, (perSession+4<<20)>>20)
	} else {
		t.Logf("live heap grew by %.1f MiB for %d MiB declared, %d MiB held by the target's accounting",
			float64(grew)/(1<<20), cmds*edtl>>20, st.DataBytes>>20)
	}

	// The budget is not a stall: as solicited data completes, the
	// in-order commands behind it get their R2Ts, and all complete.
	data := pattern(edtl, 5)
	done := 0
	for done < cmds/2 {
		for itt, r := range r2ts {
			i.answerR2T(r, data)
			delete(r2ts, itt)
		}
		for {
			p := i.recv()
			if r, ok := p.(*R2T); ok {
				r2ts[r.ITT] = r
				break
			}
			resp, ok := p.(*SCSIResp)
			if !ok || resp.Status != 0 {
				t.Fatalf("got %T %+v", p, p)
			}
			done++
			if done == cmds/2 {
				break
			}
		}
		if st := env.srv.Stats(); st.DataBytes > perSession {
			t.Fatalf("target holds %d bytes, bound %d", st.DataBytes, perSession)
		}
	}
	// The other 16 wait behind CmdSN sn+16 (TestCmdSNGapTimeout drops
	// such a connection); they hold nothing, and when the connection goes
	// nothing is held at all.
	if st := env.srv.Stats(); st.DataBytes != 0 || st.UnsolicitedDataBytes != 0 {
		t.Fatalf("parked dataless commands hold %d + %d bytes", st.DataBytes, st.UnsolicitedDataBytes)
	}
	i.nc.Close()
	waitFor(t, 10*time.Second, "the connection gone", func() bool { return env.srv.Stats().Connections == 0 })
}

// Commands parked behind a CmdSN that never comes are not kept forever:
// after Limits.CmdSNGapTimeout the connection is dropped (session
// recovery) and what they hold (here immediate data) is released. A
// session idle for longer without a gap is not touched.
func TestCmdSNGapTimeout(t *testing.T) {
	const gap = 300 * time.Millisecond
	env := startBudget(t, Limits{CmdSNGapTimeout: gap}, 2048)
	idle := dial(t, env.addr)
	idle.login(loginOpts{isid: 1})
	i := dial(t, env.addr)
	i.login(loginOpts{isid: 2, keys: map[string]string{"ImmediateData": "Yes"}})
	i.send(&SCSICmd{Final: true, Write: true, Attr: 1, ITT: 0x10, EDTL: 4096, CmdSN: i.cmdSN + 1,
		ExpStatSN: i.expStatSN, CDB: cdbWrite10(0, 8), Data: pattern(4096, 1)})
	waitFor(t, 10*time.Second, "the parked command's data", func() bool { return env.srv.Stats().UnsolicitedDataBytes > 0 })
	start := time.Now()
	i.expectClosed(20 * time.Second)
	if d := time.Since(start); d < gap/2 {
		t.Fatalf("dropped after %v, before the gap timeout", d)
	}
	waitFor(t, 10*time.Second, "the timeout counted, the data released", func() bool {
		st := env.srv.Stats()
		return st.CmdSNGapTimeouts == 1 && st.UnsolicitedDataBytes == 0
	})
	if res := idle.cmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{}); res.status != 0 {
		t.Fatalf("idle session: %+v", res)
	}
}

// Read buffers come from the same budget, allocated when the command
// runs rather than when it arrives, and given back once the data is on
// the wire.
func TestDataBudgetBoundsReads(t *testing.T) {
	env := startBudget(t, Limits{MaxDataPerSession: 1 << 20}, 2048)
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"MaxRecvDataSegmentLength": "262144"}})
	env.router.delay.Store(int64(100 * time.Millisecond))
	var itts []uint32
	for k := 0; k < 8; k++ {
		itts = append(itts, i.startCmd(cdbRead10(0, 1024), 512<<10, true, nil, cmdOpts{}))
	}
	for range itts {
		for {
			if _, ok := i.recv().(*DataIn); !ok {
				t.Fatal("want Data-In")
			}
			// The collapsed status ends each command (RFC 7143 11.7.2).
			break
		}
	}
	if p := env.router.peak.Load(); p > 2 {
		t.Fatalf("%d reads of 512 KiB ran at once under a 1 MiB budget", p)
	}
	waitFor(t, 10*time.Second, "read buffers back", func() bool { return env.srv.Stats().DataBytes == 0 })
	if env.srv.Stats().DataWaits == 0 {
		t.Fatal("no read waited")
	}
}

// The Server's budget is shared: a session waits for room another session
// gives back.
func TestDataBudgetServerWide(t *testing.T) {
	const edtl = 4 << 20
	env := startBudget(t, Limits{MaxDataPerServer: edtl}, 2*edtl/512)
	a, b := dial(t, env.addr), dial(t, env.addr)
	a.login(loginOpts{isid: 1, keys: map[string]string{"ImmediateData": "No"}})
	b.login(loginOpts{isid: 2, keys: map[string]string{"ImmediateData": "No"}})
	a.sendDatalessWrite(0x10, a.cmdSN, 0, edtl)
	a.cmdSN++
	ra := a.collectR2Ts(200 * time.Millisecond)
	b.sendDatalessWrite(0x20, b.cmdSN, edtl/512, edtl)
	b.cmdSN++
	if rb := b.collectR2Ts(300 * time.Millisecond); len(ra) != 1 || len(rb) != 0 {
		t.Fatalf("R2Ts: a %d, b %d; want 1, 0", len(ra), len(rb))
	}
	if r := a.finishWrite(ra[0x10], pattern(edtl, 1)); r.Status != 0 {
		t.Fatalf("a: %+v", r)
	}
	// a's buffer came back: b gets its R2T.
	p := b.recv()
	r, ok := p.(*R2T)
	if !ok || r.ITT != 0x20 {
		t.Fatalf("b: %T %+v", p, p)
	}
}

// A task waiting for room can be aborted; the commands queued behind it
// move up.
func TestDataBudgetAbortWaitingTask(t *testing.T) {
	const edtl = 1 << 20
	// Room for one write and a small read, which has to queue behind
	// the second write all the same: tasks are served in order.
	env := startBudget(t, Limits{MaxDataPerSession: edtl + 64<<10}, 2*edtl/512)
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"ImmediateData": "No"}})
	i.sendDatalessWrite(0x10, i.cmdSN, 0, edtl)
	i.sendDatalessWrite(0x11, i.cmdSN+1, 0, edtl)
	i.cmdSN += 2
	r2ts := i.collectR2Ts(200 * time.Millisecond)
	if len(r2ts) != 1 || r2ts[0x10] == nil {
		t.Fatalf("R2Ts %v", r2ts)
	}
	rd := i.startCmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{})
	i.expectSilence(200 * time.Millisecond) // the read waits its turn behind 0x11
	i.send(&TaskMgmtReq{Immediate: true, Function: tmfAbortTask, ITT: 0x5000, RefTaskTag: 0x11, CmdSN: i.cmdSN, RefCmdSN: i.cmdSN - 2})
	var gotTMF, gotRead bool
	for !gotTMF || !gotRead {
		switch p := i.recv().(type) {
		case *TaskMgmtResp:
			gotTMF = p.Response == tmfRespComplete
		case *DataIn:
			gotRead = p.ITT == rd && p.HasStatus && p.Status == 0
		default:
			t.Fatalf("got %T %+v", p, p)
		}
	}
	if r := i.finishWrite(r2ts[0x10], pattern(edtl, 2)); r.ITT != 0x10 || r.Status != 0 {
		t.Fatalf("%+v", r)
	}
	waitFor(t, 10*time.Second, "buffers back", func() bool { return env.srv.Stats().DataBytes == 0 })
}

// A command longer than the data budgets could never be buffered: it is
// rejected on arrival, as one beyond maxTransferLength always was.
func TestEDTLBeyondBudgetRejected(t *testing.T) {
	env := startBudget(t, Limits{MaxDataPerSession: 1 << 20}, 8192)
	i := dial(t, env.addr)
	i.login(loginOpts{keys: map[string]string{"ImmediateData": "No"}})
	i.sendDatalessWrite(0x10, i.cmdSN, 0, 2<<20)
	if r, ok := i.recv().(*Reject); !ok || r.Reason != RejectInvalidField {
		t.Fatalf("got %T %+v", r, r)
	}
}
