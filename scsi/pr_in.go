package scsi

import "encoding/binary"

// PERSISTENT RESERVE IN parameter data builders (SPC-4 6.15). They are pure
// renderings of a PRState; the caller truncates to the allocation length.

// prInReadKeysData is READ KEYS (SPC-4 6.15.2): PRGENERATION, ADDITIONAL
// LENGTH, then one 8-byte key per registered I_T nexus.
func prInReadKeysData(st *PRState) []byte {
	st = st.Clone()
	b := make([]byte, 8, 8+8*len(st.Registrations))
	binary.BigEndian.PutUint32(b[0:], st.Generation)
	for _, r := range st.Registrations {
		b = binary.BigEndian.AppendUint64(b, r.Key)
	}
	binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

// prInReadReservationData is READ RESERVATION (SPC-4 6.15.3).
func prInReadReservationData(st *PRState) []byte {
	st = st.Clone()
	b := make([]byte, 8, 24)
	binary.BigEndian.PutUint32(b[0:], st.Generation)
	if !st.Reserved {
		return b
	}
	d := make([]byte, 16)
	// SPC-4 6.15.3.2: "If the persistent reservation is an all registrants
	// type, the RESERVATION KEY field shall be set to zero"; otherwise it
	// is the holder's key.
	if !prAllRegistrants(st.Type) {
		k, _ := st.holderKey()
		binary.BigEndian.PutUint64(d[0:], k)
	}
	d[13] = st.Scope<<4 | st.Type
	b = append(b, d...)
	binary.BigEndian.PutUint32(b[4:], 16)
	return b
}

// prInReportCapsData is REPORT CAPABILITIES (SPC-4 6.15.4, table 207).
func prInReportCapsData(st *PRState) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], 8) // LENGTH
	// CRH: RESERVE/RELEASE follow SPC-4 5.13.3 (conflict with PR);
	// SIP_C: SPEC_I_PT supported; ATP_C: ALL_TG_PT supported; PTPL_C:
	// persist through power loss supported (the PRStore).
	b[2] = 0x10 | 0x08 | 0x04 | 0x01
	// TMV: the type mask is valid. ALLOW COMMANDS 000b: no information.
	b[3] = 0x80
	if st != nil && st.APTPL {
		b[3] |= 0x01 // PTPL_A
	}
	// PERSISTENT RESERVATION TYPE MASK: WR_EX_AR, EX_AC_RO, WR_EX_RO,
	// EX_AC, WR_EX in byte 4; EX_AC_AR in byte 5.
	b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02
	b[5] = 0x01
	return b
}

// prInReadFullStatusData is READ FULL STATUS (SPC-4 6.15.5): one descriptor
// per registration with its key, holder flag, type and TransportID.
func prInReadFullStatusData(st *PRState) []byte {
	st = st.Clone()
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[0:], st.Generation)
	for _, r := range st.Registrations {
		tid := encodeTransportID(r.Port)
		d := make([]byte, 24, 24+len(tid))
		binary.BigEndian.PutUint64(d[0:], r.Key)
		if r.Port.AllTgPt {
			d[12] |= 0x02
		}
		holder := st.Reserved && (prAllRegistrants(st.Type) || r.Port == st.Holder)
		if holder {
			d[12] |= 0x01 // R_HOLDER
			d[13] = st.Scope<<4 | st.Type
		}
		// SPC-4 6.15.5: RELATIVE TARGET PORT IDENTIFIER is ignored when
		// ALL_TG_PT is one.
		if !r.Port.AllTgPt {
			binary.BigEndian.PutUint16(d[18:], r.RelativeTargetPort)
		}
		binary.BigEndian.PutUint32(d[20:], uint32(len(tid)))
		b = append(b, d...)
		b = append(b, tid...)
	}
	binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}
