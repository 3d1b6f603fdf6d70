package target

import (
	"bufio"
	"io"
	"testing"
)

// Hot-path benchmarks: a pipelined initiator keeps benchDepth 4 KiB
// commands in flight against a Server on 127.0.0.1 backed by the in-memory
// memRouter. The client side is written to allocate nothing per command,
// so allocs/op is (almost) all the target's. Run with
//
//	go test -run '^$' -bench 'Read4K|Write4K' -benchmem ./target/
const benchDepth = 32

// benchClient is an allocation-free pipelined initiator for benchmarks: it
// patches ITT/CmdSN/LBA into a pre-encoded command and reads responses with
// a fixed buffer.
type benchClient struct {
	i      *ini
	tmpl   []byte // encoded SCSI Command (with immediate data for writes)
	br     *bufio.Reader
	hdr    [bhsLen]byte
	sink   []byte
	blocks uint32
}

func newBenchClient(b *testing.B, write bool) *benchClient {
	env := startServer(b, func(op *Operational) { op.CmdSNDepth = 128; op.HeaderDigest, op.DataDigest = false, false })
	env.srv.debugChecks = false // goid() per call would dominate the profile
	i := dial(b, env.addr)
	i.login(loginOpts{keys: map[string]string{"ImmediateData": "Yes", "InitialR2T": "Yes", "MaxRecvDataSegmentLength": "262144"}})
	if write && !i.immData {
		b.Fatalf("ImmediateData not negotiated: %v", i.keys)
	}
	bc := &benchClient{i: i, br: bufio.NewReaderSize(i.nc, 256<<10), sink: make([]byte, 1<<20), blocks: 2048 / 8}
	cmd := &SCSICmd{Final: true, Attr: 1, EDTL: 4096, CDB: cdbRead10(0, 8)}
	if write {
		cmd.Write = true
		cmd.CDB = cdbWrite10(0, 8)
		cmd.Data = pattern(4096, 7)
	} else {
		cmd.Read = true
	}
	bc.tmpl = AppendPDU(nil, cmd, false, false)
	return bc
}

func (bc *benchClient) send(n uint32) error {
	t := bc.tmpl
	be.PutUint32(t[16:], n)                 // ITT
	be.PutUint32(t[24:], bc.i.cmdSN)        // CmdSN
	be.PutUint32(t[28:], bc.i.expStatSN)    // ExpStatSN
	be.PutUint32(t[32+2:], (n%bc.blocks)*8) // LBA
	bc.i.cmdSN++
	_, err := bc.i.nc.Write(t)
	return err
}

// recv reads PDUs until one completes a command (SCSI Response, or Data-In
// with status) and returns its status.
func (bc *benchClient) recv() (byte, error) {
	for {
		h, err := nextBHS(bc.br, &bc.hdr, bc.sink)
		if err != nil {
			return 0, err
		}
		if st, done := completion(h, &bc.i.expStatSN); done {
			return st, nil
		}
	}
}

// nextBHS reads one PDU into hdr, dropping its data segment into sink,
// and returns the header.
func nextBHS(br *bufio.Reader, hdr *[bhsLen]byte, sink []byte) ([]byte, error) {
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	h := hdr[:]
	dsl := int(h[5])<<16 | int(h[6])<<8 | int(h[7])
	if _, err := io.ReadFull(br, sink[:dsl+padLen(dsl)]); err != nil {
		return nil, err
	}
	return h, nil
}

// completion reports whether PDU header h ends a command (a SCSI Response,
// or Data-In with status) and its status, tracking expStatSN.
func completion(h []byte, expStatSN *uint32) (byte, bool) {
	switch Opcode(h[0] & 0x3f) {
	case OpSCSIResp:
	case OpDataIn:
		if h[1]&0x01 == 0 {
			return 0, false
		}
	default:
		return 0, false
	}
	*expStatSN = be.Uint32(h[24:]) + 1
	return h[3], true
}

func runBench(b *testing.B, write bool) {
	runPipelined(b, newBenchClient(b, write), benchDepth, 4096)
}

// pipelinedClient issues numbered commands and reads their statuses.
type pipelinedClient interface {
	send(n uint32) error
	recv() (status byte, err error)
}

// runPipelined keeps depth commands of size bytes in flight until b.N
// have completed, each with GOOD status.
func runPipelined(b *testing.B, bc pipelinedClient, depth int, size int64) {
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	inflight, sent := 0, 0
	for done := 0; done < b.N; {
		for inflight < depth && sent < b.N {
			if err := bc.send(uint32(sent)); err != nil {
				b.Fatal(err)
			}
			sent++
			inflight++
		}
		st, err := bc.recv()
		if err != nil {
			b.Fatal(err)
		}
		if st != 0 {
			b.Fatalf("status %#x", st)
		}
		inflight--
		done++
	}
}

func BenchmarkRead4K(b *testing.B)  { runBench(b, false) }
func BenchmarkWrite4K(b *testing.B) { runBench(b, true) }
