package target

import (
	"bufio"
	"net"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
)

// Large-transfer benchmarks: bench1MDepth 1 MiB commands in flight, as
// qemu-img bench -s 1M -d 16 runs them. Writes carry FirstBurstLength of
// immediate data and answer the R2Ts for the rest, so the buffered-data
// budget is exercised on every command. Run alone with
//
//	go test -run '^$' -bench '1M' -benchmem ./target/
const (
	bench1MDepth = 16
	bench1MSize  = 1 << 20
	bench1MDisk  = 64 << 20
)

type bench1MClient struct {
	nc        net.Conn
	br        *bufio.Reader
	write     bool
	cmdSN     uint32
	expStatSN uint32
	tmpl      []byte // encoded SCSI Command with its immediate data
	immLen    int
	payload   []byte
	hdr       [bhsLen]byte
	out       [bhsLen]byte
	sink      []byte
	mrdsl     int
}

func newBench1MClient(b *testing.B, write bool) *bench1MClient {
	r := &memRouter{disk: make([]byte, bench1MDisk), bs: 512}
	op := DefaultOperational()
	op.NopInInterval = 0
	op.HeaderDigest, op.DataDigest = false, false
	op.CmdSNDepth = 128
	tg := &Target{Name: engineIQN, PortalGroupTag: 1, Op: op,
		ACLs:   []ACL{{InitiatorName: "iqn.2026-01.io.rbdgw:ini"}},
		Router: func(string) scsi.Router { return r }}
	s, err := NewServer(Config{Targets: []*Target{tg}})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	b.Cleanup(func() { s.Close(); <-done; s.wg.Wait() })

	i := dial(b, l.Addr().String())
	i.login(loginOpts{keys: map[string]string{"ImmediateData": "Yes", "InitialR2T": "Yes",
		"MaxRecvDataSegmentLength": "262144", "FirstBurstLength": "262144", "MaxBurstLength": "262144"}})
	bc := &bench1MClient{nc: i.nc, br: bufio.NewReaderSize(i.nc, 512<<10), write: write,
		cmdSN: i.cmdSN, expStatSN: i.expStatSN, payload: pattern(bench1MSize, 3),
		sink: make([]byte, 2<<20), mrdsl: i.mrdsl}
	cmd := &SCSICmd{Final: true, Attr: 1, EDTL: bench1MSize}
	blocks := uint16(bench1MSize / 512)
	if write {
		cmd.Write = true
		cmd.CDB = cdbWrite10(0, blocks)
		bc.immLen = min(i.firstB, i.mrdsl)
		if !i.immData {
			bc.immLen = 0
		}
		cmd.Data = bc.payload[:bc.immLen]
	} else {
		cmd.Read = true
		cmd.CDB = cdbRead10(0, blocks)
	}
	bc.tmpl = AppendPDU(nil, cmd, false, false)
	return bc
}

func (bc *bench1MClient) send(n uint32) error {
	t := bc.tmpl
	be.PutUint32(t[16:], n)
	be.PutUint32(t[24:], bc.cmdSN)
	be.PutUint32(t[28:], bc.expStatSN)
	lba := (n % (bench1MDisk / bench1MSize)) * (bench1MSize / 512)
	be.PutUint32(t[32+2:], lba)
	bc.cmdSN++
	_, err := bc.nc.Write(t)
	return err
}

// answerR2T sends the Data-Out PDUs one R2T asks for.
func (bc *bench1MClient) answerR2T(h []byte) error {
	itt, ttt := be.Uint32(h[16:]), be.Uint32(h[20:])
	off, n := int(be.Uint32(h[40:])), int(be.Uint32(h[44:]))
	var dsn uint32
	for end := off + n; off < end; dsn++ {
		seg := min(end-off, bc.mrdsl)
		o := bc.out[:]
		clear(o)
		o[0] = byte(OpDataOut)
		if off+seg == end {
			o[1] = 0x80
		}
		o[5], o[6], o[7] = byte(seg>>16), byte(seg>>8), byte(seg)
		be.PutUint32(o[16:], itt)
		be.PutUint32(o[20:], ttt)
		be.PutUint32(o[28:], bc.expStatSN)
		be.PutUint32(o[36:], dsn)
		be.PutUint32(o[40:], uint32(off))
		bufs := net.Buffers{o, bc.payload[off : off+seg]}
		if _, err := bufs.WriteTo(bc.nc); err != nil {
			return err
		}
		off += seg
	}
	return nil
}

func (bc *bench1MClient) recv() (byte, error) {
	for {
		h, err := nextBHS(bc.br, &bc.hdr, bc.sink)
		if err != nil {
			return 0, err
		}
		if Opcode(h[0]&0x3f) == OpR2T {
			if err := bc.answerR2T(h); err != nil {
				return 0, err
			}
			continue
		}
		if st, done := completion(h, &bc.expStatSN); done {
			return st, nil
		}
	}
}

func runBench1M(b *testing.B, write bool) {
	runPipelined(b, newBench1MClient(b, write), bench1MDepth, bench1MSize)
}

func BenchmarkRead1M(b *testing.B)  { runBench1M(b, false) }
func BenchmarkWrite1M(b *testing.B) { runBench1M(b, true) }
