package target

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// memRouter is a tiny device server for engine tests: an in-memory disk
// answering TEST UNIT READY, INQUIRY, READ/WRITE 10/16; every command can be
// slowed by delay. Opcode 0xff panics (to test recovery).
type memRouter struct {
	mu      sync.Mutex
	disk    []byte
	bs      int
	delay   atomic.Int64 // nanoseconds
	running atomic.Int32
	peak    atomic.Int32
	tmfs    atomic.Int32
	lost    atomic.Int32
	started chan uint32 // ITTs of commands as they start (if non-nil)
}

func newMemRouter(blocks int) *memRouter {
	return &memRouter{disk: make([]byte, blocks*512), bs: 512}
}

func checkCond(key, asc byte) scsi.Response {
	s := make([]byte, 18)
	s[0], s[2], s[7], s[12] = 0x70, key, 10, asc
	return scsi.Response{Status: scsi.StatusCheckCondition, Sense: s}
}

func (m *memRouter) Execute(ctx context.Context, cmd *scsi.Command) scsi.Response {
	n := m.running.Add(1)
	defer m.running.Add(-1)
	for {
		p := m.peak.Load()
		if n <= p || m.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if m.started != nil {
		m.started <- cmd.Tag
	}
	if d := time.Duration(m.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return scsi.Response{Status: scsi.StatusTaskAborted}
		}
	}
	cdb := cmd.CDB
	var lba, blocks uint64
	switch cdb[0] {
	case 0x00:
		return scsi.Response{}
	case 0x12:
		inq := make([]byte, 36)
		inq[4] = 31
		copy(inq[8:], "RBDGW   TESTDISK")
		alloc := int(binary.BigEndian.Uint16(cdb[3:]))
		tl := min(alloc, len(inq))
		k := copy(cmd.DataIn, inq[:tl])
		return scsi.Response{DataLen: k, TransferLength: tl}
	case 0x28, 0x2a:
		lba, blocks = uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint16(cdb[7:]))
	case 0x88, 0x8a:
		lba, blocks = binary.BigEndian.Uint64(cdb[2:]), uint64(binary.BigEndian.Uint32(cdb[10:]))
	case 0xff:
		panic("test panic")
	default:
		return checkCond(0x05, 0x20)
	}
	tl := int(blocks) * m.bs
	off := int(lba) * m.bs
	if off+tl > len(m.disk) {
		r := checkCond(0x05, 0x21)
		r.TransferLength = tl
		return r
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cdb[0] == 0x28 || cdb[0] == 0x88 {
		k := copy(cmd.DataIn, m.disk[off:off+tl])
		return scsi.Response{DataLen: k, TransferLength: tl}
	}
	copy(m.disk[off:off+min(tl, len(cmd.DataOut))], cmd.DataOut)
	return scsi.Response{TransferLength: tl}
}

func (m *memRouter) TaskManagement(*scsi.Nexus, scsi.TaskFunction, uint64) scsi.TMFResult {
	m.tmfs.Add(1)
	return scsi.TMFComplete
}
func (m *memRouter) NexusLost(*scsi.Nexus) { m.lost.Add(1) }

const engineIQN = "iqn.2026-01.io.rbdgw:test"

type testEnv struct {
	srv    *Server
	addr   string
	router *memRouter
	tgt    *Target
}

func startServer(t testing.TB, mod func(*Operational)) *testEnv {
	t.Helper()
	r := newMemRouter(2048)
	op := DefaultOperational()
	op.NopInInterval = 0
	op.HeaderDigest, op.DataDigest = true, true
	if mod != nil {
		mod(&op)
	}
	tg := &Target{Name: engineIQN, PortalGroupTag: 1, Op: op, OpenACL: true,
		Router: func(string) scsi.Router { return r }}
	return serveTarget(t, nil, tg, r, Config{})
}

// serveTarget serves tg alone with cfg (its Targets are set here) on l,
// or on a fresh 127.0.0.1 listener when l is nil, with the goroutine
// ownership checks on; the test's end closes the server and waits for it.
func serveTarget(t testing.TB, l net.Listener, tg *Target, r *memRouter, cfg Config) *testEnv {
	t.Helper()
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Targets = []*Target{tg}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.debugChecks = true
	tg.Portals = []Portal{{Address: l.Addr().String(), PortalGroupTag: 1}}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() {
		s.Close()
		<-done
		s.wg.Wait()
	})
	return &testEnv{srv: s, addr: l.Addr().String(), router: r, tgt: tg}
}

// ini is a minimal test initiator.
type ini struct {
	t         testing.TB
	nc        net.Conn
	pr        pduReader
	hd, dd    bool
	itt       uint32
	cmdSN     uint32
	expStatSN uint32
	isid      [6]byte
	tsih      uint16
	keys      map[string]string
	mrdsl     int // target's declared MaxRecvDataSegmentLength
	immData   bool
	initR2T   bool
	firstB    int
	maxBurst  int
}

type loginOpts struct {
	keys      map[string]string
	isid      byte
	discovery bool
	tsih      uint16
}

func dial(t testing.TB, addr string) *ini {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	i := &ini{t: t, nc: nc, itt: 0x100, cmdSN: 1}
	i.pr = pduReader{r: nc, maxData: 1 << 24, pool: newBufPool()}
	return i
}

func (i *ini) send(p PDU) {
	i.t.Helper()
	b := AppendPDU(nil, p, i.hd, i.dd)
	if _, err := i.nc.Write(b); err != nil {
		i.t.Fatalf("write: %v", err)
	}
}

func (i *ini) recv() PDU {
	i.t.Helper()
	p, err := i.tryRecv(5 * time.Second)
	if err != nil {
		i.t.Fatalf("recv: %v", err)
	}
	return p
}

func (i *ini) tryRecv(d time.Duration) (PDU, error) {
	i.nc.SetReadDeadline(time.Now().Add(d))
	raw, err := i.pr.readPDU()
	if err != nil {
		return nil, err
	}
	if raw.err != nil {
		return nil, raw.err
	}
	// copy data out of the pooled buffer
	switch p := raw.pdu.(type) {
	case *DataIn:
		p.Data = append([]byte(nil), p.Data...)
	case *SCSIResp:
		p.Data = append([]byte(nil), p.Data...)
	case *NopIn:
		p.Data = append([]byte(nil), p.Data...)
	case *TextResp:
		p.Data = append([]byte(nil), p.Data...)
	case *LoginResp:
		p.Data = append([]byte(nil), p.Data...)
	case *Reject:
		p.Data = append([]byte(nil), p.Data...)
	}
	if sn, ok := statSNOf(raw.pdu); ok && !snLess(sn+1, i.expStatSN) {
		i.expStatSN = sn + 1
	}
	return raw.pdu, nil
}

func statSNOf(p PDU) (uint32, bool) {
	switch p := p.(type) {
	case *SCSIResp:
		return p.StatSN, true
	case *DataIn:
		return p.StatSN, p.HasStatus
	case *TaskMgmtResp:
		return p.StatSN, true
	case *LogoutResp:
		return p.StatSN, true
	case *TextResp:
		return p.StatSN, true
	case *NopIn:
		return p.StatSN, p.ITT != reservedTag
	case *LoginResp:
		return p.StatSN, true
	case *Reject:
		return p.StatSN, true
	}
	return 0, false
}

func encodeKeys(m map[string]string, order []string) []byte {
	var kvs []KeyValue
	for _, k := range order {
		if v, ok := m[k]; ok {
			kvs = append(kvs, KeyValue{k, v})
		}
	}
	return EncodeText(kvs)
}

var keyOrder = []string{"InitiatorName", "TargetName", "SessionType", "AuthMethod", "HeaderDigest", "DataDigest",
	"MaxRecvDataSegmentLength", "ImmediateData", "InitialR2T", "MaxBurstLength", "FirstBurstLength",
	"MaxOutstandingR2T", "ErrorRecoveryLevel", "MaxConnections", "DefaultTime2Wait", "DefaultTime2Retain",
	"DataPDUInOrder", "DataSequenceInOrder"}

// login runs a login straight into the operational stage and full feature.
func (i *ini) login(o loginOpts) *LoginResp {
	i.t.Helper()
	keys := map[string]string{
		"InitiatorName":            "iqn.2026-01.io.rbdgw:ini",
		"TargetName":               engineIQN,
		"SessionType":              "Normal",
		"HeaderDigest":             "None",
		"DataDigest":               "None",
		"MaxRecvDataSegmentLength": "65536",
		"ImmediateData":            "Yes",
		"InitialR2T":               "Yes",
		"MaxBurstLength":           "262144",
		"FirstBurstLength":         "65536",
		"ErrorRecoveryLevel":       "0",
	}
	if o.discovery {
		keys["SessionType"] = "Discovery"
		delete(keys, "TargetName")
	}
	for k, v := range o.keys {
		if v == "" {
			delete(keys, k)
		} else {
			keys[k] = v
		}
	}
	i.isid = [6]byte{0x80, 0, 0, 0, 0, o.isid}
	i.tsih = o.tsih
	req := &LoginReq{Transit: true, CSG: 1, NSG: 3, ISID: i.isid, TSIH: i.tsih, ITT: i.itt, CmdSN: i.cmdSN,
		ExpStatSN: i.expStatSN, Data: encodeKeys(keys, keyOrder)}
	i.send(req)
	i.keys = map[string]string{}
	for {
		p := i.recv()
		r, ok := p.(*LoginResp)
		if !ok {
			i.t.Fatalf("login: got %T", p)
		}
		if r.StatusClass != 0 {
			return r
		}
		kvs, err := ParseText(r.Data)
		if err != nil {
			i.t.Fatal(err)
		}
		for _, kv := range kvs {
			i.keys[kv.Key] = kv.Value
		}
		if r.Continue || !r.Transit {
			i.send(&LoginReq{Transit: true, CSG: 1, NSG: 3, ISID: i.isid, TSIH: i.tsih, ITT: i.itt, CmdSN: i.cmdSN, ExpStatSN: i.expStatSN})
			continue
		}
		i.tsih = r.TSIH
		i.cmdSN = r.ExpCmdSN
		i.hd = i.keys["HeaderDigest"] == "CRC32C"
		i.dd = i.keys["DataDigest"] == "CRC32C"
		i.pr.hdrDigest, i.pr.dataDigest = i.hd, i.dd
		num := func(k string, def int, both string) int {
			v, ok := i.keys[k]
			if !ok {
				v = both
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return def
			}
			if mine, _ := strconv.Atoi(keys[k]); mine > 0 && k != "MaxRecvDataSegmentLength" && mine < n {
				n = mine
			}
			return n
		}
		i.mrdsl = num("MaxRecvDataSegmentLength", 8192, "8192")
		i.firstB = num("FirstBurstLength", 65536, keys["FirstBurstLength"])
		i.maxBurst = num("MaxBurstLength", 262144, keys["MaxBurstLength"])
		yes := func(k string, and bool) bool {
			v, ok := i.keys[k]
			if !ok {
				v = keys[k]
			}
			return v == "Yes"
		}
		i.immData = yes("ImmediateData", true)
		i.initR2T = yes("InitialR2T", false)
		i.itt++
		return r
	}
}

type cmdResult struct {
	status      byte
	sense       []byte
	data        []byte
	over, under bool
	residual    uint32
	dataIns     int
	r2ts        int
	collapsed   bool
	maxDataSeg  int
	finals      int
	expDataSN   uint32
}

type cmdOpts struct {
	immediate   bool
	noImmData   bool
	unsolicited bool
	noFinal     bool
	lun         uint64
}

func cdbRead10(lba uint32, blocks uint16) []byte {
	c := make([]byte, 10)
	c[0] = 0x28
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

func cdbWrite10(lba uint32, blocks uint16) []byte {
	c := cdbRead10(lba, blocks)
	c[0] = 0x2a
	return c
}

// startCmd sends a SCSI Command (and its immediate/unsolicited data).
func (i *ini) startCmd(cdb []byte, edtl uint32, read bool, out []byte, o cmdOpts) uint32 {
	i.t.Helper()
	itt := i.itt
	i.itt++
	c := &SCSICmd{Immediate: o.immediate, Final: true, Read: read, Write: out != nil, Attr: 1, LUN: o.lun,
		ITT: itt, EDTL: edtl, CmdSN: i.cmdSN, ExpStatSN: i.expStatSN, CDB: cdb}
	if !o.immediate {
		i.cmdSN++
	}
	var sent int
	if out != nil && i.immData && !o.noImmData {
		sent = min(len(out), i.firstB, i.mrdsl)
		c.Data = out[:sent]
	}
	if out != nil && !i.initR2T && sent < min(len(out), i.firstB) {
		c.Final = false
	}
	i.send(c)
	if !c.Final {
		limit := min(len(out), i.firstB)
		var dsn uint32
		for sent < limit {
			n := min(limit-sent, i.mrdsl)
			i.send(&DataOut{Final: sent+n == limit, ITT: itt, TTT: reservedTag, ExpStatSN: i.expStatSN,
				DataSN: dsn, BufferOffset: uint32(sent), Data: out[sent : sent+n]})
			sent += n
			dsn++
		}
	}
	return itt
}

// waitCmd collects Data-In/R2T/SCSI Response for itt, answering R2Ts from out.
func (i *ini) waitCmd(itt uint32, out []byte) *cmdResult {
	i.t.Helper()
	res := &cmdResult{}
	for {
		p := i.recv()
		switch p := p.(type) {
		case *R2T:
			if p.ITT != itt {
				i.t.Fatalf("R2T for %#x", p.ITT)
			}
			res.r2ts++
			off, end := int(p.BufferOffset), int(p.BufferOffset+p.DesiredLength)
			var dsn uint32
			for off < end {
				n := min(end-off, i.mrdsl)
				i.send(&DataOut{Final: off+n == end, ITT: itt, TTT: p.TTT, ExpStatSN: i.expStatSN,
					DataSN: dsn, BufferOffset: uint32(off), Data: out[off : off+n]})
				off += n
				dsn++
			}
		case *DataIn:
			if p.ITT != itt {
				i.t.Fatalf("Data-In for %#x", p.ITT)
			}
			if int(p.BufferOffset) != len(res.data) {
				i.t.Fatalf("Data-In offset %d, have %d", p.BufferOffset, len(res.data))
			}
			if uint32(res.dataIns) != p.DataSN {
				i.t.Fatalf("DataSN %d want %d", p.DataSN, res.dataIns)
			}
			res.dataIns++
			res.maxDataSeg = max(res.maxDataSeg, len(p.Data))
			if p.Final {
				res.finals++
			}
			res.data = append(res.data, p.Data...)
			if p.HasStatus {
				res.collapsed = true
				res.status, res.over, res.under, res.residual = p.Status, p.Overflow, p.Underflow, p.Residual
				return res
			}
		case *SCSIResp:
			if p.ITT != itt {
				i.t.Fatalf("response for %#x, want %#x", p.ITT, itt)
			}
			res.status, res.over, res.under, res.residual = p.Status, p.Overflow, p.Underflow, p.Residual
			res.expDataSN = p.ExpDataSN
			if len(p.Data) >= 2 {
				n := int(binary.BigEndian.Uint16(p.Data))
				res.sense = p.Data[2 : 2+n]
			}
			return res
		default:
			i.t.Fatalf("unexpected %T %+v", p, p)
		}
	}
}

func (i *ini) cmd(cdb []byte, edtl uint32, read bool, out []byte, o cmdOpts) *cmdResult {
	i.t.Helper()
	return i.waitCmd(i.startCmd(cdb, edtl, read, out, o), out)
}

func (i *ini) logout() *LogoutResp {
	i.t.Helper()
	i.send(&LogoutReq{Immediate: true, Reason: 0, ITT: i.itt, CmdSN: i.cmdSN, ExpStatSN: i.expStatSN})
	i.itt++
	for {
		p := i.recv()
		if r, ok := p.(*LogoutResp); ok {
			return r
		}
	}
}

func (i *ini) expectClosed(d time.Duration) {
	i.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		_, err := i.tryRecv(time.Until(deadline))
		if err == nil {
			continue
		}
		if ce, ok := err.(*ConnError); ok && (ce.Err == io.EOF || strings.Contains(fmt.Sprint(ce.Err), "reset") || strings.Contains(fmt.Sprint(ce.Err), "closed")) {
			return
		}
		if ce, ok := err.(*ConnError); ok && strings.Contains(fmt.Sprint(ce.Err), "timeout") {
			i.t.Fatalf("connection still open after %v", d)
		}
		return
	}
	i.t.Fatalf("connection still open after %v", d)
}

func (i *ini) expectSilence(d time.Duration) {
	i.t.Helper()
	p, err := i.tryRecv(d)
	if err == nil {
		i.t.Fatalf("expected silence, got %T %+v", p, p)
	}
	if ce, ok := err.(*ConnError); !ok || !strings.Contains(fmt.Sprint(ce.Err), "timeout") {
		i.t.Fatalf("expected timeout, got %v", err)
	}
}
