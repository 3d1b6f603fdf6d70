package target

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	le         = binary.LittleEndian
)

// crc32c is the iSCSI digest (RFC 7143 13.1, CRC32C). It travels least
// significant byte first, as the RFC 3720 B.4 examples show.
func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// crc32cPadded is the data digest: it covers the data and its padding
// (RFC 7143 11.2.3).
func crc32cPadded(data []byte, pad int) uint32 {
	c := crc32.Update(0, castagnoli, data)
	return crc32.Update(c, castagnoli, zeroPad[:pad])
}

// pduReader frames PDUs off a byte stream. It is the only part of the codec
// that touches io. Only the connection's reader goroutine uses it; its
// settings change only while that goroutine waits on the readMore gate.
type pduReader struct {
	r          io.Reader
	hdrDigest  bool
	dataDigest bool
	// maxData caps DataSegmentLength: the MaxRecvDataSegmentLength the
	// target declared (8192 during login, RFC 7143 13.12).
	maxData int
	pool    *bufPool

	hdr [bhsLen + 4*maxAHSLenWords + digestLen]byte

	// reuse, when set, makes SCSI Command and Data-Out PDUs come from
	// rings instead of the heap. Safe only when the consumer is done with
	// a PDU before the reader has framed readRing more of its kind: the
	// connection's credit gate allows at most maxReadAhead PDUs in flight,
	// and no handler keeps these two types past dispatch.
	reuse    bool
	cmds     [readRing]SCSICmd
	dataOuts [readRing]DataOut
	nCmd     uint32
	nDataOut uint32
}

// readRing exceeds the credits of the readMore gate, so a ring slot is
// reused only after its PDU was dispatched.
const readRing = maxReadAhead + 1

// rawPDU is one framed PDU. buf, when non-nil, is the pooled buffer behind
// Data and must be released by whoever consumes the PDU.
type rawPDU struct {
	pdu PDU
	buf *pbuf
	bhs [bhsLen]byte // copy of the header, for Reject data
	err error        // a ParseError: answer with Reject, keep going
}

// readPDU reads one PDU. A non-nil error is a ConnError: the stream is out
// of sync or the peer broke a MUST that leaves no way to continue.
func (pr *pduReader) readPDU() (rawPDU, error) {
	var out rawPDU
	h := pr.hdr[:bhsLen]
	if _, err := io.ReadFull(pr.r, h); err != nil {
		if err == io.ErrUnexpectedEOF {
			countError("pdu_truncated_bhs")
		}
		return out, &ConnError{Reason: "read BHS", Err: err}
	}
	copy(out.bhs[:], h)
	ahsLen := int(h[4]) * 4
	dsl := int(h[5])<<16 | int(h[6])<<8 | int(h[7])
	// RFC 7143 13.12: "the initiator ... MUST NOT send a data segment
	// longer than the target's MaxRecvDataSegmentLength". The stream
	// cannot be trusted past that, so the connection ends.
	if dsl > pr.maxData {
		countError("pdu_data_too_long")
		return out, &ConnError{Reason: fmt.Sprintf("DataSegmentLength %d exceeds MaxRecvDataSegmentLength %d", dsl, pr.maxData)}
	}
	n := bhsLen + ahsLen
	if ahsLen > 0 {
		if _, err := io.ReadFull(pr.r, pr.hdr[bhsLen:n]); err != nil {
			return out, &ConnError{Reason: "read AHS", Err: err}
		}
	}
	if pr.hdrDigest {
		if _, err := io.ReadFull(pr.r, pr.hdr[n:n+digestLen]); err != nil {
			return out, &ConnError{Reason: "read header digest", Err: err}
		}
		// RFC 7143 7.8: "when a target receives an iSCSI PDU with a
		// header digest error, it MUST either discard the header and all
		// data up to the beginning of a later PDU or close the connection";
		// at ERL 0 we cannot find that later PDU reliably, so we close.
		if le.Uint32(pr.hdr[n:]) != crc32c(pr.hdr[:n]) {
			countError("pdu_header_digest")
			return out, &ConnError{Reason: "header digest mismatch"}
		}
	}
	var data []byte
	if dsl > 0 {
		pad := padLen(dsl)
		out.buf = pr.pool.get(dsl + pad + digestLen)
		b := out.buf.b[:dsl+pad]
		if _, err := io.ReadFull(pr.r, b); err != nil {
			pr.pool.put(out.buf)
			return rawPDU{}, &ConnError{Reason: "read data segment", Err: err}
		}
		if pr.dataDigest {
			d := out.buf.b[dsl+pad : dsl+pad+digestLen]
			if _, err := io.ReadFull(pr.r, d); err != nil {
				pr.pool.put(out.buf)
				return rawPDU{}, &ConnError{Reason: "read data digest", Err: err}
			}
			// RFC 7143 7.8: a data digest error at ERL 0 leaves no way to
			// recover the data; the session is recovered by the initiator.
			if le.Uint32(d) != crc32c(b) {
				pr.pool.put(out.buf)
				countError("pdu_data_digest")
				return rawPDU{}, &ConnError{Reason: "data digest mismatch"}
			}
		}
		data = b[:dsl]
	}
	var p PDU
	var err error
	switch op := Opcode(h[0] & 0x3f); {
	case pr.reuse && op == OpSCSICmd:
		c := &pr.cmds[pr.nCmd%readRing]
		pr.nCmd++
		if err = parseSCSICmdInto(c, h, pr.hdr[bhsLen:bhsLen+ahsLen], data); err == nil {
			p = c
		}
	case pr.reuse && op == OpDataOut && ahsLen == 0:
		d := &pr.dataOuts[pr.nDataOut%readRing]
		pr.nDataOut++
		parseDataOutInto(d, h, data)
		p = d
	default:
		p, err = ParsePDU(h, pr.hdr[bhsLen:bhsLen+ahsLen], data)
	}
	if err != nil {
		if out.buf != nil {
			pr.pool.put(out.buf)
			out.buf = nil
		}
		out.err = err
		return out, nil
	}
	out.pdu = p
	return out, nil
}
