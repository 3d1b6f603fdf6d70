package tests

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// rawSession is a minimal iSCSI initiator for tests that must see a
// command's SCSI status and sense data, which libiscsi's tools and
// qemu-img turn into a bare I/O error: one connection, one command at a
// time, writes only as immediate data (at most rawMaxImmediate bytes).
type rawSession struct {
	conn      net.Conn
	lun       uint64 // SAM LUN field
	itt       uint32
	cmdSN     uint32
	expStatSN uint32
	timeout   time.Duration // per command: longer means the target hung
}

// rawMaxImmediate is the largest write rawSession sends: it offers
// FirstBurstLength 65536 and the target declares at least that much
// MaxRecvDataSegmentLength.
const rawMaxImmediate = 65536

// scsiResult is a command's outcome.
type scsiResult struct {
	Status byte
	Sense  []byte // as sent (fixed or descriptor format)
	Data   []byte // Data-In
}

// SenseKey returns "key/asc/ascq" in hex, or "" without sense data.
func (r scsiResult) SenseKey() string {
	s := r.Sense
	switch {
	case len(s) >= 14 && s[0]&0x7f <= 0x71:
		return fmt.Sprintf("%02x/%02x/%02x", s[2]&0x0f, s[12], s[13])
	case len(s) >= 4:
		return fmt.Sprintf("%02x/%02x/%02x", s[1]&0x0f, s[2], s[3])
	}
	return ""
}

func (r scsiResult) String() string {
	return fmt.Sprintf("status %#02x sense %s", r.Status, r.SenseKey())
}

// dialRaw logs in to target on portal and addresses lun.
func dialRaw(portal, initiator, target string, lun int) (*rawSession, error) {
	c, err := net.DialTimeout("tcp", portal, 5*time.Second)
	if err != nil {
		return nil, err
	}
	s := &rawSession{conn: c, lun: uint64(lun) << 48, itt: 1, timeout: 30 * time.Second}
	// Straight to the operational stage, no security negotiation, and on
	// to full feature phase in one step.
	req := loginReq(1, 3, true, 0, keys("InitiatorName="+initiator, "TargetName="+target, "SessionType=Normal",
		"HeaderDigest=None", "DataDigest=None", "ImmediateData=Yes", "InitialR2T=Yes",
		"FirstBurstLength=65536", "MaxBurstLength=262144", "MaxRecvDataSegmentLength=262144"))
	if err := s.send(req); err != nil {
		c.Close()
		return nil, err
	}
	bhs, _, err := s.recv()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("login: %w", err)
	}
	if bhs[0]&0x3f != 0x23 || bhs[36] != 0 || bhs[1]&0x83 != 0x83 {
		c.Close()
		return nil, fmt.Errorf("login refused or incomplete: opcode %#x flags %#x status %d/%d", bhs[0], bhs[1], bhs[36], bhs[37])
	}
	s.cmdSN = binary.BigEndian.Uint32(bhs[28:]) // ExpCmdSN
	return s, nil
}

func (s *rawSession) Close() error { return s.conn.Close() }

// readySession logs initiator in to the first LUN of target on srv, past
// the unit attentions of a new nexus; the session closes with the test.
func readySession(t *testing.T, srv server, initiator, target string) *rawSession {
	t.Helper()
	s, err := dialRaw(srv.Portal(), initiator, target, srv.LUN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ready(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *rawSession) send(p []byte) error {
	s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	_, err := s.conn.Write(p)
	return err
}

// recv reads one PDU: its header and data segment. A StatSN advances
// ExpStatSN.
func (s *rawSession) recv() ([48]byte, []byte, error) {
	var bhs [48]byte
	s.conn.SetReadDeadline(time.Now().Add(s.timeout))
	if _, err := io.ReadFull(s.conn, bhs[:]); err != nil {
		return bhs, nil, err
	}
	ahs := int(bhs[4]) * 4
	dsl := int(bhs[5])<<16 | int(bhs[6])<<8 | int(bhs[7])
	rest := make([]byte, ahs+(dsl+3)&^3)
	if _, err := io.ReadFull(s.conn, rest); err != nil {
		return bhs, nil, err
	}
	switch bhs[0] & 0x3f {
	case 0x21, 0x23, 0x32, 0x20:
		s.expStatSN = binary.BigEndian.Uint32(bhs[24:]) + 1
	case 0x25:
		if bhs[1]&0x01 != 0 { // S: status (and a StatSN) in the Data-In
			s.expStatSN = binary.BigEndian.Uint32(bhs[24:]) + 1
		}
	}
	return bhs, rest[ahs : ahs+dsl], nil
}

// Do sends one command (out: immediate write data; in: bytes expected
// back) and waits for its status, answering NOP-In pings meanwhile.
func (s *rawSession) Do(cdb, out []byte, in int) (scsiResult, error) {
	if len(out) > rawMaxImmediate {
		return scsiResult{}, fmt.Errorf("write of %d bytes exceeds the %d bytes of immediate data this client sends", len(out), rawMaxImmediate)
	}
	flags := byte(0x80 | 0x01) // F, SIMPLE
	edtl := in
	if out != nil {
		flags |= 0x20
		edtl = len(out)
	}
	if in > 0 {
		flags |= 0x40
	}
	s.itt++
	req := scsiCmd(flags, s.lun, s.itt, uint32(edtl), s.cmdSN, cdb, out, -1)
	binary.BigEndian.PutUint32(req[28:], s.expStatSN)
	s.cmdSN++
	if err := s.send(req); err != nil {
		return scsiResult{}, err
	}
	var res scsiResult
	data := make([]byte, in)
	for {
		bhs, seg, err := s.recv()
		if err != nil {
			return res, fmt.Errorf("waiting for the response: %w", err)
		}
		switch op := bhs[0] & 0x3f; op {
		case 0x20: // NOP-In: a ping wants a NOP-Out back
			if ttt := binary.BigEndian.Uint32(bhs[20:]); ttt != 0xffffffff {
				var b [48]byte
				b[0], b[1] = 0x40, 0x80
				binary.BigEndian.PutUint64(b[8:], s.lun)
				binary.BigEndian.PutUint32(b[16:], 0xffffffff)
				binary.BigEndian.PutUint32(b[20:], ttt)
				binary.BigEndian.PutUint32(b[24:], s.cmdSN)
				binary.BigEndian.PutUint32(b[28:], s.expStatSN)
				if err := s.send(pdu(b, nil, 0)); err != nil {
					return res, err
				}
			}
		case 0x32: // Async Message: nothing to do here
		case 0x25: // Data-In
			off := int(binary.BigEndian.Uint32(bhs[40:]))
			if off+len(seg) > len(data) {
				return res, fmt.Errorf("Data-In at %d+%d beyond the %d bytes expected", off, len(seg), len(data))
			}
			copy(data[off:], seg)
			if bhs[1]&0x01 != 0 {
				res.Status, res.Data = bhs[3], data
				return res, nil
			}
		case 0x21: // SCSI Response
			if bhs[2] != 0 {
				return res, fmt.Errorf("SCSI Response with iSCSI response %#x", bhs[2])
			}
			res.Status, res.Data = bhs[3], data
			if len(seg) >= 2 {
				n := int(binary.BigEndian.Uint16(seg))
				if 2+n <= len(seg) {
					res.Sense = seg[2 : 2+n]
				}
			}
			return res, nil
		case 0x3f: // Reject
			return res, errors.New("the target rejected the command PDU")
		default:
			return res, fmt.Errorf("unexpected PDU opcode %#x", op)
		}
	}
}

// Ready sends TEST UNIT READY until GOOD, consuming the unit attentions
// a new nexus reports first.
func (s *rawSession) Ready() error {
	var last scsiResult
	for i := 0; i < 8; i++ {
		r, err := s.Do([]byte{0x00, 0, 0, 0, 0, 0}, nil, 0)
		if err != nil {
			return err
		}
		if r.Status == 0 {
			return nil
		}
		last = r
	}
	return fmt.Errorf("TEST UNIT READY never GOOD: %s", last)
}

// Write10 writes p (whole 512-byte blocks) at lba.
func (s *rawSession) Write10(lba uint32, p []byte) (scsiResult, error) {
	cdb := []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], uint16(len(p)/512))
	return s.Do(cdb, p, 0)
}

// ReadCapacity10 returns the capacity in bytes (READ CAPACITY(10)).
func (s *rawSession) ReadCapacity10() (int64, scsiResult, error) {
	r, err := s.Do([]byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 8)
	if err != nil || r.Status != 0 {
		return 0, r, err
	}
	last, bs := binary.BigEndian.Uint32(r.Data), binary.BigEndian.Uint32(r.Data[4:])
	return (int64(last) + 1) * int64(bs), r, nil
}
