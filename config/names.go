package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ValidateName checks an iSCSI name (RFC 7143 4.2.7): an iqn., eui. or naa.
// name of at most 223 bytes.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("empty iSCSI name")
	}
	// RFC 7143 4.2.7.1: "iSCSI names ... MUST NOT be larger than 223 bytes".
	if len(name) > 223 {
		return fmt.Errorf("longer than 223 bytes (RFC 7143 4.2.7.1)")
	}
	lower := strings.ToLower(name)
	switch {
	case strings.HasPrefix(lower, "iqn."):
		return validateIQN(name)
	case strings.HasPrefix(lower, "eui."):
		// RFC 7143 4.2.7.5: "eui." followed by an EUI-64 identifier (16
		// ASCII-encoded hexadecimal digits).
		if h := name[4:]; len(h) != 16 || !isHex(h) {
			return errors.New(`want "eui." and 16 hex digits (RFC 7143 4.2.7.5)`)
		}
	case strings.HasPrefix(lower, "naa."):
		// RFC 7143 4.2.7.6: "naa." followed by an NAA identifier
		// represented in ASCII-encoded hexadecimal digits (16 or 32).
		if h := name[4:]; (len(h) != 16 && len(h) != 32) || !isHex(h) {
			return errors.New(`want "naa." and 16 or 32 hex digits (RFC 7143 4.2.7.6)`)
		}
	default:
		return errors.New(`want an "iqn.", "eui." or "naa." name (RFC 7143 4.2.7)`)
	}
	return nil
}

// validateIQN checks "iqn.yyyy-mm.reversed.domain[:anything]" (RFC 7143
// 4.2.7.4).
func validateIQN(name string) error {
	// RFC 7143 4.2.7.1: the only punctuation allowed is ".", "-" and ":";
	// names are case-insensitive and stored lowercase after stringprep
	// (RFC 3722), so we ask for the normalized form rather than guess.
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-', r == ':':
		case r >= 'A' && r <= 'Z':
			return fmt.Errorf("uppercase %q: iSCSI names are lowercase after normalization (RFC 3722); write %q", r, strings.ToLower(name))
		default:
			return fmt.Errorf("character %q not allowed: only a-z, 0-9, '.', '-' and ':' (RFC 7143 4.2.7.1)", r)
		}
	}
	rest := name[len("iqn."):]
	// RFC 7143 4.2.7.4: "A date code, in yyyy-mm format. This date MUST be
	// a date during which the naming authority owned the domain name".
	if len(rest) < 8 || rest[4] != '-' || !isDigits(rest[:4]) || !isDigits(rest[5:7]) {
		return errors.New(`want "iqn.yyyy-mm.<reversed domain>[:<unique>]" (RFC 7143 4.2.7.4)`)
	}
	if m := (rest[5]-'0')*10 + rest[6] - '0'; m < 1 || m > 12 {
		return fmt.Errorf("month %s is not 01-12 (RFC 7143 4.2.7.4)", rest[5:7])
	}
	if rest[7] != '.' {
		return errors.New(`want a "." and the reversed domain name after the date (RFC 7143 4.2.7.4)`)
	}
	authority, _, _ := strings.Cut(rest[8:], ":")
	if authority == "" || strings.HasPrefix(authority, ".") || strings.HasSuffix(authority, ".") || strings.Contains(authority, "..") {
		return errors.New("the naming authority (reversed domain name) is missing or malformed (RFC 7143 4.2.7.4)")
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && s != ""
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// ValidateCHAPUser checks a CHAP user name: 8-64 characters of
// [A-Za-z0-9@_.:-] (ceph-iscsi's rule).
func ValidateCHAPUser(u string) error {
	if len(u) < 8 || len(u) > 64 {
		return fmt.Errorf("length %d: CHAP user names are 8-64 characters", len(u))
	}
	for _, r := range u {
		if !(isAlnum(r) || strings.ContainsRune("@_.:-", r)) {
			return fmt.Errorf("character %q not allowed: use A-Z a-z 0-9 @ _ . : -", r)
		}
	}
	return nil
}

// ValidateCHAPPassword checks a CHAP secret: 12-16 characters of
// [A-Za-z0-9@_/-] (ceph-iscsi's rule; RFC 7143 12.1.3 also asks for at
// least 12 bytes when secrets are not random binary). It never echoes the
// secret.
func ValidateCHAPPassword(p string) error {
	if len(p) < 12 || len(p) > 16 {
		return fmt.Errorf("length %d: CHAP passwords are 12-16 characters", len(p))
	}
	for _, r := range p {
		if !(isAlnum(r) || strings.ContainsRune("@_/-", r)) {
			return errors.New("a character is not allowed: use A-Z a-z 0-9 @ _ / -")
		}
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

const hidden = "<redacted>"

// validateCHAP checks one scope's credentials; passwords never appear in
// the error.
func validateCHAP(e *errs, path string, c CHAP) {
	if c.Username == "" {
		if c.Password != "" {
			e.add(path+".password", hidden, "set without a username")
		}
		if c.MutualUsername != "" || c.MutualPassword != "" {
			e.add(path+".mutual_username", quote(c.MutualUsername), "mutual CHAP needs one-way CHAP (username/password) as well")
		}
		return
	}
	if err := ValidateCHAPUser(c.Username); err != nil {
		e.add(path+".username", quote(c.Username), "%v", err)
	}
	if err := ValidateCHAPPassword(c.Password); err != nil {
		e.add(path+".password", hidden, "%v", err)
	}
	if c.MutualUsername == "" {
		if c.MutualPassword != "" {
			e.add(path+".mutual_password", hidden, "set without mutual_username")
		}
		return
	}
	if err := ValidateCHAPUser(c.MutualUsername); err != nil {
		e.add(path+".mutual_username", quote(c.MutualUsername), "%v", err)
	}
	if err := ValidateCHAPPassword(c.MutualPassword); err != nil {
		e.add(path+".mutual_password", hidden, "%v", err)
	}
	// RFC 7143 12.1.3: "Any CHAP secret used for initiator authentication
	// MUST NOT be configured for authentication of any target".
	if c.MutualPassword == c.Password {
		e.add(path+".mutual_password", hidden, "must differ from password (RFC 7143 12.1.3)")
	}
	if c.MutualUsername == c.Username {
		e.add(path+".mutual_username", quote(c.MutualUsername), "must differ from username")
	}
}

// BackendKind says which store holds a disk's data.
type BackendKind int

const (
	BackendFile BackendKind = iota + 1
	BackendRBD
)

// Backend is a parsed Disk.Backend.
type Backend struct {
	Kind      BackendKind
	Path      string // file
	Pool      string // rbd
	Namespace string // rbd, may be empty
	Image     string // rbd
}

// ParseBackend parses "file:<absolute or relative path>" or
// "rbd:<pool>[/<namespace>]/<image>". Whether this binary can open rbd:
// disks is the gateway's business (its build tags), not validation's.
func ParseBackend(s string) (Backend, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Backend{}, errors.New(`want "file:<path>" or "rbd:<pool>[/<namespace>]/<image>"`)
	}
	switch kind {
	case "file":
		if rest == "" || strings.ContainsRune(rest, 0) {
			return Backend{}, errors.New(`"file:" needs a path`)
		}
		return Backend{Kind: BackendFile, Path: rest}, nil
	case "rbd":
		parts := strings.Split(rest, "/")
		var b Backend
		switch len(parts) {
		case 2:
			b = Backend{Kind: BackendRBD, Pool: parts[0], Image: parts[1]}
		case 3:
			b = Backend{Kind: BackendRBD, Pool: parts[0], Namespace: parts[1], Image: parts[2]}
		default:
			return Backend{}, errors.New(`want "rbd:<pool>[/<namespace>]/<image>"`)
		}
		if b.Pool == "" || b.Image == "" || (len(parts) == 3 && b.Namespace == "") {
			return Backend{}, errors.New(`want "rbd:<pool>[/<namespace>]/<image>" with no empty part`)
		}
		return b, nil
	default:
		return Backend{}, fmt.Errorf("unknown backend kind %q: want file or rbd", kind)
	}
}

// ParseWWN parses a 128-bit WWN written as 32 hex digits, with or without
// UUID dashes.
func ParseWWN(s string) ([16]byte, error) {
	var w [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return w, errors.New("want 32 hex digits (dashes allowed, as in a UUID)")
	}
	if _, err := hex.Decode(w[:], []byte(h)); err != nil {
		return w, errors.New("want 32 hex digits (dashes allowed, as in a UUID)")
	}
	return w, nil
}

// FormatWWN writes a WWN in UUID form, the way ceph-iscsi stores it.
func FormatWWN(w [16]byte) string {
	h := hex.EncodeToString(w[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// lioWWNPrefix is what LIO puts in front of a generated NAA designator:
// NAA 6 and the Linux-iSCSI.org OUI 00-14-05.
const lioWWNPrefix = "6001405"

// NewWWN returns a random WWN in LIO's NAA 6 form, "6001405" and 25
// random hex digits, written as FormatWWN does.
func NewWWN() (string, error) {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	w, err := ParseWWN(lioWWNPrefix + hex.EncodeToString(r[:])[:32-len(lioWWNPrefix)])
	return FormatWWN(w), err
}
