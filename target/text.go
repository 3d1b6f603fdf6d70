package target

import (
	"bytes"
	"fmt"
)

// KeyValue is one key=value pair of an iSCSI text data segment
// (RFC 7143 section 6.1).
type KeyValue struct{ Key, Value string }

// TextError reports a malformed text data segment.
type TextError struct {
	Offset int
	Reason string
}

func (e *TextError) Error() string {
	return fmt.Sprintf("iscsi text: %s at offset %d", e.Reason, e.Offset)
}

// Limits of RFC 7143 section 6.1.
const (
	// A key name is at most 63 bytes.
	maxKeyLen = 63
	// RFC 7143 6.1 limits a value to 255 bytes unless its key says
	// otherwise; binary values (CHAP) may be longer, so the parser allows
	// 8192 bytes and leaves per-key limits to the negotiation.
	maxValueLen = 8192
)

// ParseText splits a text data segment into its key=value pairs. Pairs are
// NUL-terminated (RFC 7143 6.1: "Every key=value pair, including the last or
// only pair in a LTDS, MUST be followed by one null (0x00) delimiter");
// trailing padding NULs are tolerated, and a final pair lacking its NUL is
// accepted as the libiscsi and Linux initiators always terminate anyway.
func ParseText(data []byte) ([]KeyValue, error) {
	var kvs []KeyValue
	off := 0
	for off < len(data) {
		end := bytes.IndexByte(data[off:], 0)
		var pair []byte
		next := 0
		if end < 0 {
			pair = data[off:]
			next = len(data)
		} else {
			pair = data[off : off+end]
			next = off + end + 1
		}
		if len(pair) == 0 {
			// RFC 7143 6.1: the segment is padded to 4 bytes with NULs;
			// an empty pair is only acceptable as part of that padding.
			for _, b := range data[off:] {
				if b != 0 {
					return nil, &TextError{off, "empty key=value pair"}
				}
			}
			break
		}
		eq := bytes.IndexByte(pair, '=')
		if eq < 0 {
			return nil, &TextError{off, "missing '='"}
		}
		key, val := pair[:eq], pair[eq+1:]
		if len(key) == 0 {
			return nil, &TextError{off, "empty key"}
		}
		// RFC 7143 6.1: a key name is at most 63 bytes.
		if len(key) > maxKeyLen {
			return nil, &TextError{off, "key longer than 63 bytes"}
		}
		// RFC 7143 6.1: key names are made of letters, digits, dot,
		// minus, plus, commercial at and underscore; 13.27 adds the '#'
		// of "X#" IANA-registered keys.
		for i, c := range key {
			if !isKeyChar(c) && !(i == 1 && c == '#' && key[0] == 'X') {
				return nil, &TextError{off + i, fmt.Sprintf("invalid key character %q", c)}
			}
		}
		if len(val) > maxValueLen {
			return nil, &TextError{off + eq + 1, "value too long"}
		}
		kvs = append(kvs, KeyValue{Key: string(key), Value: string(val)})
		off = next
	}
	return kvs, nil
}

func isKeyChar(c byte) bool {
	switch {
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	case c == '.', c == '-', c == '+', c == '@', c == '_':
		return true
	}
	return false
}

// EncodeText renders pairs as key=value\0 ... (RFC 7143 6.1). It adds no
// padding: the PDU codec pads the data segment.
func EncodeText(kvs []KeyValue) []byte {
	n := 0
	for _, kv := range kvs {
		n += len(kv.Key) + len(kv.Value) + 2
	}
	b := make([]byte, 0, n)
	for _, kv := range kvs {
		b = append(b, kv.Key...)
		b = append(b, '=')
		b = append(b, kv.Value...)
		b = append(b, 0)
	}
	return b
}
