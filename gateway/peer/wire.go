// Package peer is the link between gateways that carries SCSI commands
// from a gateway that does not own an LU to the one that does (see
// scsi.Forwarder): a TCP connection per pair of gateways, authenticated
// both ways with a secret derived from the cluster's key, every frame
// sealed (AES-256-GCM, a key per direction and session), on which many
// commands are in flight at once and complete in any order.
//
// Wire format, all integers big-endian. After the handshake (auth.go)
// each direction is a stream of sealed frames, u32 sealed length |
// sealed bytes (the length is authenticated too), which open to:
//
//	u8 kind | u64 id | body
//
// kindCommand (client to server) carries one command:
//
//	str lu | str initiator port | str initiator name | [6] ISID |
//	str target port | u16 relative target port | u16 target port group |
//	u64 LUN | u32 tag | u8 task attribute | u8 direction |
//	u32 expected length | str CDB | Data-Out (the rest)
//
// where str is a u16 length and that many bytes. kindCancel (client to
// server, no body) aborts command id. kindResponse (server to client)
// answers it:
//
//	u8 status | u32 transfer length | str sense | Data-In (the rest)
//
// and kindRefused (server to client) says the command was not run:
//
//	str reason
package peer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rbdgw/rbdgw/scsi"
)

const (
	kindCommand  = 1
	kindCancel   = 2
	kindResponse = 3
	kindRefused  = 4
)

// frameKindIDLen is the kind and id that open every frame.
const frameKindIDLen = 1 + 8

// maxData bounds the Data-Out or Data-In of one command: what the iSCSI
// target accepts per command.
const maxData = scsi.MaxTransferBytesLimit

// maxBody bounds a frame body: the data plus the largest header (strings
// are at most 64 KiB each, and a command has six).
const maxBody = maxData + 6*(2+65535) + 64

// maxCDB is the longest CDB (16 bytes + 244 of additional CDB from an AHS,
// SAM-5 variable length CDBs).
const maxCDB = 260

// errMalformed marks a frame that does not decode.
var errMalformed = errors.New("peer: malformed frame")

// frame is one decoded frame.
type frame struct {
	kind byte
	id   uint64
	body []byte
}

// encoder appends to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) u8(v byte)    { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) bytes(v []byte) {
	e.u16(uint16(len(v)))
	e.b = append(e.b, v...)
}
func (e *encoder) str(v string) { e.bytes([]byte(v)) }

// decoder consumes a byte slice; the first short read sets err and every
// later read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n > len(d.b) {
		d.err = errMalformed
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) bytes() []byte { return d.take(int(d.u16())) }
func (d *decoder) str() string   { return string(d.bytes()) }

// request is a decoded kindCommand body.
type request struct {
	lu  string
	cmd scsi.Command
}

// tooLong reports a string that does not fit its u16 length.
func tooLong(ss ...string) error {
	for _, s := range ss {
		if len(s) > 65535 {
			return fmt.Errorf("peer: a field of %d bytes is too long for the wire", len(s))
		}
	}
	return nil
}

// encodeCommand returns the head of a kindCommand body: everything but the
// Data-Out, which follows it on the wire.
func encodeCommand(lu string, cmd *scsi.Command) ([]byte, error) {
	n := cmd.Nexus
	if n == nil {
		return nil, errors.New("peer: command without a nexus")
	}
	if err := tooLong(lu, n.InitiatorPort, n.InitiatorName, n.TargetPort); err != nil {
		return nil, err
	}
	if len(cmd.CDB) > maxCDB || len(cmd.DataOut) > maxData || cmd.ExpectedLength > maxData {
		return nil, fmt.Errorf("peer: command too large to forward (CDB %d bytes, data %d/%d bytes)",
			len(cmd.CDB), len(cmd.DataOut), cmd.ExpectedLength)
	}
	e := encoder{b: make([]byte, 0, 128+len(lu)+len(n.InitiatorPort)+len(n.InitiatorName)+len(n.TargetPort)+len(cmd.CDB))}
	e.str(lu)
	e.str(n.InitiatorPort)
	e.str(n.InitiatorName)
	e.b = append(e.b, n.ISID[:]...)
	e.str(n.TargetPort)
	e.u16(n.RelativeTargetPort)
	e.u16(n.TargetPortGroup)
	e.u64(cmd.LUN)
	e.u32(cmd.Tag)
	e.u8(byte(cmd.Attr))
	e.u8(byte(cmd.Dir))
	e.u32(cmd.ExpectedLength)
	e.bytes(cmd.CDB)
	return e.b, nil
}

// decodeCommand decodes a kindCommand body. The command's DataOut aliases
// body; DataIn is left for the server to allocate.
func decodeCommand(body []byte) (request, error) {
	d := decoder{b: body}
	var q request
	q.lu = d.str()
	n := &scsi.Nexus{InitiatorPort: d.str(), InitiatorName: d.str()}
	copy(n.ISID[:], d.take(6))
	n.TargetPort = d.str()
	n.RelativeTargetPort = d.u16()
	n.TargetPortGroup = d.u16()
	q.cmd = scsi.Command{Nexus: n, LUN: d.u64(), Tag: d.u32(), Attr: scsi.TaskAttr(d.u8()), Dir: scsi.Direction(d.u8()), ExpectedLength: d.u32()}
	q.cmd.CDB = d.bytes()
	if d.err != nil {
		return request{}, d.err
	}
	switch {
	case len(q.cmd.CDB) == 0 || len(q.cmd.CDB) > maxCDB:
		return request{}, fmt.Errorf("%w: CDB of %d bytes", errMalformed, len(q.cmd.CDB))
	case q.cmd.ExpectedLength > maxData:
		return request{}, fmt.Errorf("%w: expected length %d exceeds %d", errMalformed, q.cmd.ExpectedLength, maxData)
	case len(d.b) > int(q.cmd.ExpectedLength):
		return request{}, fmt.Errorf("%w: %d bytes of Data-Out for an expected length of %d", errMalformed, len(d.b), q.cmd.ExpectedLength)
	case q.cmd.Dir&^(scsi.DirRead|scsi.DirWrite) != 0:
		return request{}, fmt.Errorf("%w: direction %#x", errMalformed, q.cmd.Dir)
	}
	if len(d.b) > 0 {
		q.cmd.DataOut = d.b
	}
	return q, nil
}

// encodeResponse returns the head of a kindResponse body; the Data-In
// (resp.DataLen bytes) follows it on the wire.
func encodeResponse(resp scsi.Response) []byte {
	e := encoder{b: make([]byte, 0, 8+len(resp.Sense))}
	e.u8(resp.Status)
	e.u32(uint32(resp.TransferLength))
	e.bytes(resp.Sense)
	return e.b
}

// decodeResponse decodes a kindResponse body into resp, copying the
// Data-In into dataIn (the command's buffer).
func decodeResponse(body, dataIn []byte) (scsi.Response, error) {
	d := decoder{b: body}
	resp := scsi.Response{Status: d.u8(), TransferLength: int(d.u32())}
	sense := d.bytes()
	if d.err != nil {
		return scsi.Response{}, d.err
	}
	if len(d.b) > len(dataIn) {
		return scsi.Response{}, fmt.Errorf("%w: %d bytes of Data-In for a buffer of %d", errMalformed, len(d.b), len(dataIn))
	}
	if len(sense) > 0 {
		resp.Sense = append([]byte(nil), sense...)
	}
	resp.DataLen = copy(dataIn, d.b)
	return resp, nil
}
