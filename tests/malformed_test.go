package tests

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

const badIQN = "iqn.2026-01.io.rbdgw.test:malformed"

// pdu builds a 48-byte basic header segment followed by data padded to
// four bytes, with DataSegmentLength set from data unless dsl >= 0.
func pdu(bhs [48]byte, data []byte, dsl int) []byte {
	if dsl < 0 {
		dsl = len(data)
	}
	bhs[5], bhs[6], bhs[7] = byte(dsl>>16), byte(dsl>>8), byte(dsl)
	out := append(bhs[:0:0], bhs[:]...)
	out = append(out, data...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}

// loginReq is a Login Request (RFC 7143 11.12) with the given stages.
func loginReq(csg, nsg byte, transit bool, itt uint32, keys string) []byte {
	var b [48]byte
	b[0] = 0x40 | 0x03 // immediate, opcode Login
	b[1] = csg<<2 | nsg
	if transit {
		b[1] |= 0x80
	}
	copy(b[8:14], []byte{0x80, 0x12, 0x34, 0x56, 0x78, 0x9a}) // ISID (random format)
	binary.BigEndian.PutUint32(b[16:], itt)
	return pdu(b, []byte(keys), -1)
}

// keys joins key=value pairs NUL-terminated, as the text format wants.
func keys(kv ...string) string { return strings.Join(kv, "\x00") + "\x00" }

func normalLoginKeys() string {
	return keys("InitiatorName="+initiator1, "TargetName="+badIQN, "SessionType=Normal", "AuthMethod=None")
}

// scsiCmd is a SCSI Command PDU (RFC 7143 11.3).
func scsiCmd(flags byte, lun uint64, itt, edtl, cmdSN uint32, cdb []byte, data []byte, dsl int) []byte {
	var b [48]byte
	b[0] = 0x01
	b[1] = flags
	binary.BigEndian.PutUint64(b[8:], lun)
	binary.BigEndian.PutUint32(b[16:], itt)
	binary.BigEndian.PutUint32(b[20:], edtl)
	binary.BigEndian.PutUint32(b[24:], cmdSN)
	copy(b[32:48], cdb)
	return pdu(b, data, dsl)
}

// TestMalformedInput throws broken PDUs at the portal, each on its own
// connection, and checks after every one that the daemon is alive and
// still serves a real initiator.
func TestMalformedInput(t *testing.T) {
	needTools(t, "iscsi-inq")
	s := startServer(t, e2eTarget(), serverSpec{Targets: []targetDef{{IQN: badIQN, Size: lunSize}}})
	url := lunURL(s, badIQN, nil)
	lun := uint64(s.LUN()) << 48
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	huge := func(op byte) []byte {
		var b [48]byte
		b[0] = op
		b[1] = 0x80
		return pdu(b, nil, 0xffffff)[:48]
	}
	badOp := func(op byte) []byte {
		var b [48]byte
		b[0] = op
		b[1] = 0x80
		return pdu(b, nil, 0)
	}
	// A login that succeeds, so the remaining steps reach full feature
	// phase (operational stage straight away: no security negotiation).
	// AuthMethod is a security-stage key (RFC 7143 13.x), so it is left out.
	login := loginReq(1, 3, true, 1, keys("InitiatorName="+initiator1, "TargetName="+badIQN, "SessionType=Normal", "HeaderDigest=None", "DataDigest=None"))

	cases := []struct {
		name  string
		steps [][]byte // written in order; the connection is closed after
		login bool     // expect a Login Response before the later steps
	}{
		{name: "random bytes", steps: [][]byte{garbage(4096)}},
		{name: "random headers", steps: [][]byte{garbage(48), garbage(48), garbage(48)}},
		{name: "truncated header", steps: [][]byte{loginReq(0, 1, true, 1, normalLoginKeys())[:20]}},
		{name: "truncated data", steps: [][]byte{loginReq(0, 1, true, 1, normalLoginKeys())[:60]}},
		{name: "huge DataSegmentLength login", steps: [][]byte{huge(0x43), garbage(1000)}},
		{name: "huge DataSegmentLength scsi", steps: [][]byte{huge(0x01), garbage(1000)}},
		{name: "huge TotalAHSLength", steps: [][]byte{func() []byte { b := loginReq(0, 1, true, 1, ""); b[4] = 0xff; return b }()}},
		{name: "bad opcode first", steps: [][]byte{badOp(0x3f)}},
		{name: "target opcode from initiator", steps: [][]byte{badOp(0x23), badOp(0x21)}},
		{name: "scsi command before login", steps: [][]byte{scsiCmd(0xc0, lun, 1, 512, 0, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 0)}},
		{name: "login with odd keys", steps: [][]byte{loginReq(0, 1, true, 1, keys(
			"InitiatorName=", "InitiatorName=a", "InitiatorName=b", "TargetName="+badIQN, "=value", "novalue",
			"X-com.example.odd=1", "AuthMethod=Bogus,None,None", "MaxRecvDataSegmentLength=0",
			"HeaderDigest=CRC32C,CRC32C,None,Bogus", "SessionType=Weird",
			"Key"+strings.Repeat("K", 70000)+"=1"))}},
		{name: "login keys without NUL", steps: [][]byte{loginReq(0, 1, true, 1, "InitiatorName="+initiator1+"\x00TargetName="+badIQN)}},
		{name: "login with non-UTF-8 and control bytes", steps: [][]byte{loginReq(0, 1, true, 1, "InitiatorName=\xff\xfe\x01\x02\x00TargetName=\x00\x00\x00")}},
		{name: "login bad stage transition", steps: [][]byte{loginReq(3, 0, true, 1, normalLoginKeys()), loginReq(2, 2, true, 1, normalLoginKeys())}},
		{name: "login with unsupported version", steps: [][]byte{func() []byte { b := loginReq(0, 1, true, 1, normalLoginKeys()); b[2], b[3] = 9, 9; return b }()}},
		{name: "login unknown target", steps: [][]byte{loginReq(1, 3, true, 1, keys("InitiatorName="+initiator1, "TargetName=iqn.2026-01.io.rbdgw.test:nosuch", "SessionType=Normal"))}},
		{name: "discovery login then garbage text", steps: [][]byte{
			loginReq(1, 3, true, 1, keys("InitiatorName="+initiator1, "SessionType=Discovery")),
			func() []byte { var b [48]byte; b[0], b[1] = 0x04, 0x80; return pdu(b, garbage(300), -1) }(),
			func() []byte {
				var b [48]byte
				b[0], b[1] = 0x04, 0x80
				return pdu(b, []byte("SendTargets=All"), -1) // no NUL
			}(),
		}, login: true},
		{name: "ff: bad cdbs", login: true, steps: [][]byte{login,
			scsiCmd(0x80, lun, 2, 0, 1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, nil, 0),
			scsiCmd(0xc0, lun, 3, 0, 2, []byte{0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0}, nil, 0),                      // READ(10) past the end, EDTL 0
			scsiCmd(0xc0, lun, 4, 512, 3, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0),                                      // zero blocks, EDTL 512
			scsiCmd(0xc0, lun, 5, 0xffffffff, 4, []byte{0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, nil, 0), // READ(16) 4G blocks
			scsiCmd(0xa0, lun, 6, 4096, 5, []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0}, garbage(100), -1),                           // WRITE(10) short immediate data
			scsiCmd(0xa0, lun, 7, 512, 6, []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, garbage(8192), -1),                           // more data than EDTL
			scsiCmd(0xe0, lun, 8, 512, 7, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 0),                                      // both R and W
			scsiCmd(0xc0, 0xffff<<48, 9, 512, 8, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 0),                               // unknown LUN
			scsiCmd(0xc0, lun, 10, 512, 9999, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 0),                                  // CmdSN out of window
			scsiCmd(0x80, lun, 11, 0, 10, []byte{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, nil, 0),                    // COMPARE AND WRITE without data
		}},
		{name: "ff: stray Data-Out, huge NOP, bad TMF, bad logout", login: true, steps: [][]byte{login,
			func() []byte {
				var b [48]byte
				b[0], b[1] = 0x05, 0x80
				binary.BigEndian.PutUint32(b[16:], 77)
				return pdu(b, garbage(512), -1)
			}(),
			func() []byte { var b [48]byte; b[0], b[1] = 0x40, 0x80; return pdu(b, garbage(70000), -1) }(),
			func() []byte { var b [48]byte; b[0], b[1] = 0x42, 0x80|0x7f; return pdu(b, nil, 0) }(),
			func() []byte { var b [48]byte; b[0], b[1] = 0x46, 0x80|0x7f; return pdu(b, nil, 0) }(),
			garbage(48),
		}},
		{name: "ff: write then drop connection mid-data", login: true, steps: [][]byte{login,
			scsiCmd(0xa0, lun, 2, 1<<20, 1, []byte{0x2a, 0, 0, 0, 0, 0, 0, 0x08, 0, 0}, garbage(512), -1),
		}},
	}

	for _, c := range cases {
		t.Run(strings.NewReplacer(" ", "_", ":", "").Replace(c.name), func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", s.Portal(), 5*time.Second)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			// Drain whatever the target answers so it never blocks on us.
			drained := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(conn, 1<<20))
				drained <- b
			}()
			for i, st := range c.steps {
				_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Write(st); err != nil {
					t.Logf("step %d: write: %v (the target closed the connection: fine)", i, err)
					break
				}
				if i == 0 && c.login {
					time.Sleep(100 * time.Millisecond)
				}
			}
			time.Sleep(100 * time.Millisecond)
			conn.Close()
			resp := <-drained
			if c.login && (len(resp) < 48 || resp[0]&0x3f != 0x23 || resp[36] != 0) {
				t.Errorf("the login that should open the session failed: got %d bytes %x", len(resp), head(resp, 48))
			}
			checkAlive(t, s, url)
		})
	}
}

func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// checkAlive fails the test if the daemon died or no longer serves INQUIRY.
func checkAlive(t *testing.T, s server, url string) {
	t.Helper()
	if exited, err := s.Exited(); exited {
		t.Fatalf("%s (pid %d) died: %v", s.Kind(), s.PID(), err)
	}
	if out, err := inquiry(initiator2, url); err != nil {
		t.Fatalf("%s no longer answers iscsi-inq: %v\n%s", s.Kind(), err, out)
	}
}

// TestRandomPDUs logs in properly, then sends PDUs with valid framing but
// random opcodes, flags and fields (SCSI commands with random CDBs, Data-Out
// for unknown tasks, TMFs, Text, SNACK, Logout), on many connections with
// fixed seeds so a failure reproduces. The daemon must stay up and keep
// serving.
func TestRandomPDUs(t *testing.T) {
	needTools(t, "iscsi-inq")
	s := startServer(t, e2eTarget(), serverSpec{Targets: []targetDef{{IQN: badIQN, Size: lunSize}}})
	url := lunURL(s, badIQN, nil)
	lun := uint64(s.LUN()) << 48
	opcodes := []byte{0x00, 0x01, 0x01, 0x01, 0x02, 0x04, 0x05, 0x05, 0x06, 0x10, 0x1c, 0x03}
	for seed := uint64(1); seed <= 48; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 0x1f))
		conn, err := net.DialTimeout("tcp", s.Portal(), 5*time.Second)
		if err != nil {
			t.Fatalf("seed %d: dial: %v", seed, err)
		}
		drained := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, conn)
			close(drained)
		}()
		login := loginReq(1, 3, true, 1, keys("InitiatorName="+initiator1, "TargetName="+badIQN, "SessionType=Normal", "HeaderDigest=None", "DataDigest=None"))
		_, _ = conn.Write(login)
		time.Sleep(20 * time.Millisecond)
		cmdSN := uint32(0)
		for i := 0; i < 60; i++ {
			var b [48]byte
			for j := range b {
				b[j] = byte(rnd.Uint32())
			}
			b[0] = opcodes[rnd.IntN(len(opcodes))]
			if rnd.IntN(4) == 0 {
				b[0] |= 0x40 // immediate
			}
			b[4] = 0 // no AHS, mostly
			if rnd.IntN(10) == 0 {
				b[4] = byte(rnd.IntN(3))
			}
			if rnd.IntN(3) > 0 { // mostly our LUN and an in-window CmdSN
				binary.BigEndian.PutUint64(b[8:], lun)
				cmdSN++
				binary.BigEndian.PutUint32(b[24:], cmdSN)
			}
			if b[0]&0x3f == 0x01 && rnd.IntN(2) == 0 {
				// A plausible READ/WRITE CDB with random LBA and length.
				b[32] = []byte{0x28, 0x2a, 0x88, 0x8a, 0x42, 0x41, 0x93, 0x35, 0x89, 0x12, 0x25, 0x9e}[rnd.IntN(12)]
				binary.BigEndian.PutUint32(b[20:], uint32(rnd.IntN(1<<18)))
			}
			data := make([]byte, rnd.IntN(3)*rnd.IntN(2048))
			for j := range data {
				data[j] = byte(rnd.Uint32())
			}
			p := pdu(b, data, -1)
			// AHS bytes, if announced, come after the BHS.
			if n := int(b[4]) * 4; n > 0 {
				p = append(p[:48:48], append(make([]byte, n), p[48:]...)...)
			}
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := conn.Write(p); err != nil {
				break // the target dropped the connection: fine
			}
		}
		time.Sleep(20 * time.Millisecond)
		conn.Close()
		<-drained
		if exited, err := s.Exited(); exited {
			t.Fatalf("seed %d: %s died: %v", seed, s.Kind(), err)
		}
		if out, err := inquiry(initiator2, url); err != nil {
			t.Fatalf("seed %d: %s no longer answers iscsi-inq: %v\n%s", seed, s.Kind(), err, out)
		}
	}
}
