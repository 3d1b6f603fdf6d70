package scsi

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// PersistentReserveIn is PERSISTENT RESERVE IN (SPC-4 6.15).
type PersistentReserveIn struct {
	ServiceAction byte
	AllocLen      uint16
}

// PERSISTENT RESERVE IN service actions (SPC-4 6.15.1, table 199).
const (
	prInReadKeys          byte = 0x00
	prInReadReservation   byte = 0x01
	prInReportCaps        byte = 0x02
	prInReadFullStatus    byte = 0x03
	protocolIDiSCSI       byte = 0x5
	prOutParamLenBasic         = 24
	prOutParamLenSpecIPT       = 28
	transportIDMinAddLen       = 20
	transportIDFormatName byte = 0x00
	transportIDFormatISID byte = 0x01
)

func decodePersistentReserveIn(cdb []byte) (PersistentReserveIn, error) {
	c := PersistentReserveIn{ServiceAction: cdb[1] & 0x1F, AllocLen: binary.BigEndian.Uint16(cdb[7:9])}
	// SPC-4 6.15.1 table 199: codes 04h-1Fh are reserved; a reserved
	// service action is INVALID FIELD IN CDB.
	if c.ServiceAction > prInReadFullStatus {
		return c, invalidCDB(1, 4)
	}
	return c, nil
}

// PersistentReserveOut is PERSISTENT RESERVE OUT (SPC-4 6.16).
type PersistentReserveOut struct {
	ServiceAction byte
	Scope, Type   byte
	ParamLen      uint32
}

func decodePersistentReserveOut(cdb []byte) (PersistentReserveOut, error) {
	c := PersistentReserveOut{
		ServiceAction: cdb[1] & 0x1F,
		Scope:         cdb[2] >> 4,
		Type:          cdb[2] & 0x0F,
		ParamLen:      binary.BigEndian.Uint32(cdb[5:9]),
	}
	// SPC-4 6.16.2 table 211: 08h (REPLACE LOST RESERVATION) is not
	// supported here and 09h-1Fh are reserved: INVALID FIELD IN CDB.
	if c.ServiceAction > prOutRegisterAndMove {
		return c, invalidCDB(1, 4)
	}
	return c, nil
}

// TransportID is an iSCSI TransportID (SPC-4 7.6.4.6): an initiator name
// and, for format 01h, the ISID of one initiator port.
type TransportID struct {
	Name string // lower-cased iSCSI name
	ISID string // 12 lower-case hex digits, "" for format 00h
	// Offset is where the TransportID starts in the parameter list, for
	// field pointers.
	Offset int
}

// PROutParams is the PERSISTENT RESERVE OUT parameter list (SPC-4 6.16.3),
// or for REGISTER AND MOVE its own layout (SPC-4 6.16.4).
type PROutParams struct {
	Key, SAKey         uint64
	SpecIPT            bool
	AllTgPt            bool
	APTPL              bool
	TransportIDs       []TransportID
	Unreg              bool   // REGISTER AND MOVE
	RelativeTargetPort uint16 // REGISTER AND MOVE
}

// decodePROutParams parses the parameter list of service action sa. It is
// pure: the bytes in, a typed list or a *CheckCondition out.
func decodePROutParams(sa byte, b []byte) (*PROutParams, error) {
	// SPC-4 6.16.3.1: "If the parameter list length is less than 24 ...
	// PARAMETER LIST LENGTH ERROR" (both layouts have 24 fixed bytes).
	if len(b) < prOutParamLenBasic {
		return nil, errParamListLength()
	}
	p := &PROutParams{Key: binary.BigEndian.Uint64(b[0:8]), SAKey: binary.BigEndian.Uint64(b[8:16])}
	if sa == prOutRegisterAndMove {
		p.Unreg = b[17]&0x02 != 0
		p.APTPL = b[17]&0x01 != 0
		p.RelativeTargetPort = binary.BigEndian.Uint16(b[18:20])
		n := binary.BigEndian.Uint32(b[20:24])
		// SPC-4 6.16.4: the TRANSPORTID PARAMETER DATA LENGTH must describe
		// bytes actually sent: "If the parameter list length ... does not
		// match, ... PARAMETER LIST LENGTH ERROR".
		if uint64(n)+prOutParamLenBasic != uint64(len(b)) {
			return nil, errParamListLength()
		}
		// SPC-4 6.16.4: the TransportID must be at least 24 bytes.
		if n < 24 {
			return nil, invalidParam(20, -1)
		}
		tids, err := decodeTransportIDs(b[24:], 24, true)
		if err != nil {
			return nil, err
		}
		p.TransportIDs = tids
		return p, nil
	}
	p.SpecIPT = b[20]&0x08 != 0
	p.AllTgPt = b[20]&0x04 != 0
	p.APTPL = b[20]&0x01 != 0
	if p.SpecIPT {
		// SPC-4 6.16.3.1: SPEC_I_PT is valid only for REGISTER; "If the
		// SPEC_I_PT bit is set to one for any service action except the
		// REGISTER service action, ... INVALID FIELD IN PARAMETER LIST".
		if sa != prOutRegister {
			return nil, invalidParam(20, 3)
		}
		if len(b) < prOutParamLenSpecIPT {
			return nil, errParamListLength()
		}
		n := binary.BigEndian.Uint32(b[24:28])
		// SPC-4 6.16.3.1: a TRANSPORTID PARAMETER DATA LENGTH that runs
		// past the parameter list truncates a TransportID: PARAMETER LIST
		// LENGTH ERROR.
		if uint64(n)+prOutParamLenSpecIPT > uint64(len(b)) {
			return nil, errParamListLength()
		}
		tids, err := decodeTransportIDs(b[28:28+n], 28, false)
		if err != nil {
			return nil, err
		}
		p.TransportIDs = tids
		return p, nil
	}
	// SPC-4 6.16.3.1: "if the SPEC_I_PT bit is set to zero ... the
	// parameter list length shall be 24 ... otherwise PARAMETER LIST LENGTH
	// ERROR".
	if len(b) != prOutParamLenBasic {
		return nil, errParamListLength()
	}
	return p, nil
}

// decodeTransportIDs parses consecutive iSCSI TransportIDs; base is the
// offset of b in the parameter list. one demands exactly one.
func decodeTransportIDs(b []byte, base int, one bool) ([]TransportID, error) {
	var out []TransportID
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return nil, errParamListLength()
		}
		format := b[off] >> 6
		// SPC-4 7.6.4.1: only the iSCSI protocol identifier is served
		// here; other protocols' TransportIDs are INVALID FIELD IN
		// PARAMETER LIST.
		if b[off]&0x0F != protocolIDiSCSI || b[off]&0x30 != 0 {
			return nil, invalidParam(base+off, -1)
		}
		if format != transportIDFormatName && format != transportIDFormatISID {
			return nil, invalidParam(base+off, 7)
		}
		al := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		// SPC-4 7.6.4.6: "The ADDITIONAL LENGTH field shall be at least 20
		// and shall be a multiple of four".
		if al < transportIDMinAddLen || al%4 != 0 {
			return nil, invalidParam(base+off+2, -1)
		}
		if off+4+al > len(b) {
			return nil, errParamListLength()
		}
		raw := b[off+4 : off+4+al]
		// SPC-4 7.6.4.6: the name is null-terminated.
		z := bytes.IndexByte(raw, 0)
		if z <= 0 {
			return nil, invalidParam(base+off+4, -1)
		}
		// iSCSI names compare case-insensitively; lower-case once so
		// indexes below refer to the same string.
		s := strings.ToLower(string(raw[:z]))
		tid := TransportID{Offset: base + off}
		if format == transportIDFormatISID {
			// SPC-4 7.6.4.6 table 398: "<name>,i,0x<ISID in hex>".
			k := strings.LastIndex(s, ",i,0x")
			if k <= 0 {
				return nil, invalidParam(base+off+4, -1)
			}
			isid := s[k+5:]
			if v, err := hex.DecodeString(isid); err != nil || len(v) != 6 {
				return nil, invalidParam(base+off+4, -1)
			}
			tid.Name, tid.ISID = s[:k], isid
		} else {
			if strings.Contains(s, ",") {
				return nil, invalidParam(base+off+4, -1)
			}
			tid.Name = s
		}
		out = append(out, tid)
		off += 4 + al
		if one && off != len(b) {
			return nil, errParamListLength()
		}
	}
	return out, nil
}

// encodeTransportID renders the TransportID of registration port p: format
// 01h when its ISID is known, else 00h.
func encodeTransportID(p PRPort) []byte {
	s := p.Initiator
	format := transportIDFormatName
	if p.ISID != "" {
		s += ",i,0x" + p.ISID
		format = transportIDFormatISID
	}
	n := len(s) + 1 // null terminator
	if n%4 != 0 {
		n += 4 - n%4
	}
	if n < transportIDMinAddLen {
		n = transportIDMinAddLen
	}
	b := make([]byte, 4+n)
	b[0] = format<<6 | protocolIDiSCSI
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	copy(b[4:], s)
	return b
}
