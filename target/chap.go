package target

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"strings"
)

// CHAP algorithm numbers for CHAP_A (RFC 7143 12.1.3, IANA "PPP
// Authentication Algorithms"; RFC 9266 adds the SHA family to iSCSI).
const (
	ChapMD5     = 5
	ChapSHA1    = 6
	ChapSHA256  = 7
	ChapSHA3256 = 8
)

// chapAlgos lists the algorithms we implement, strongest first: CHAP_A is
// list selection, and we pick the strongest the initiator offers.
var chapAlgos = []int{ChapSHA256, ChapMD5}

// chapChallengeLen is the CHAP_C length we send: the digest size, so the
// challenge carries as much entropy as the response can protect.
func chapChallengeLen(algo int) int {
	if algo == ChapSHA256 {
		return 32
	}
	return 16
}

func chapHash(algo int) hash.Hash {
	if algo == ChapSHA256 {
		return sha256.New()
	}
	return md5.New()
}

// ChapResponse computes the CHAP response H(id || secret || challenge)
// (RFC 1994 section 4.1, RFC 7143 12.1.3) for one of the supported
// algorithms.
func ChapResponse(algo int, id byte, secret string, challenge []byte) []byte {
	h := chapHash(algo)
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

var errBinary = errors.New("malformed binary value")

// decodeBinary decodes an iSCSI binary-value: "0x"/"0X" followed by hex
// digits or "0b"/"0B" followed by base64 (RFC 7143 6.1). An odd number of
// hex digits has an implied leading zero.
func decodeBinary(v string) ([]byte, error) {
	if len(v) < 3 || v[0] != '0' {
		return nil, errBinary
	}
	body := v[2:]
	switch v[1] {
	case 'x', 'X':
		if len(body)%2 == 1 {
			body = "0" + body
		}
		b, err := hex.DecodeString(body)
		if err != nil {
			return nil, errBinary
		}
		return b, nil
	case 'b', 'B':
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil, errBinary
		}
		return b, nil
	}
	return nil, errBinary
}

func encodeHex(b []byte) string { return "0x" + hex.EncodeToString(b) }

// parseNumber decodes an iSCSI numerical value: decimal or "0x" hex
// (RFC 7143 6.1), at most 64 bits.
func parseNumber(v string) (uint64, bool) {
	if v == "" {
		return 0, false
	}
	if len(v) > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X') {
		n, err := strconv.ParseUint(v[2:], 16, 64)
		return n, err == nil
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// chapState tracks CHAP within the security stage.
type chapState uint8

const (
	chapIdle      chapState = iota // AuthMethod not yet CHAP
	chapWaitAlgo                   // AuthMethod=CHAP agreed, expecting CHAP_A
	chapWaitReply                  // challenge sent, expecting CHAP_N/CHAP_R
	chapDone                       // initiator authenticated
)

// chapServer is the target side of one CHAP exchange.
type chapServer struct {
	creds     *CHAP
	state     chapState
	algo      int
	id        byte
	challenge []byte
	// challengeStep is the login step whose answer carried the challenge.
	challengeStep int
}

// selectAlgo handles CHAP_A, a list of algorithm numbers. It returns the
// keys to answer with (CHAP_A, CHAP_I, CHAP_C).
func (c *chapServer) selectAlgo(value string) ([]KeyValue, *LoginError) {
	offered := map[int]bool{}
	for _, s := range strings.Split(value, ",") {
		if n, ok := parseNumber(s); ok && n < 256 {
			offered[int(n)] = true
		}
	}
	algo := 0
	for _, a := range chapAlgos {
		if offered[a] {
			algo = a
			break
		}
	}
	// RFC 7143 12.1.3: the target answers CHAP_A with one algorithm it
	// supports from the initiator's list; with none in common no CHAP
	// exchange can happen, so authentication fails.
	if algo == 0 {
		return nil, ErrAuthFailure("no supported CHAP_A in " + value)
	}
	var idb [1]byte
	ch := make([]byte, chapChallengeLen(algo))
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, ErrTargetError("no randomness for CHAP")
	}
	if _, err := rand.Read(ch); err != nil {
		return nil, ErrTargetError("no randomness for CHAP")
	}
	c.algo, c.id, c.challenge = algo, idb[0], ch
	c.state = chapWaitReply
	return []KeyValue{
		{"CHAP_A", strconv.Itoa(algo)},
		{"CHAP_I", strconv.Itoa(int(c.id))},
		{"CHAP_C", encodeHex(ch)},
	}, nil
}

// verify checks CHAP_N/CHAP_R and, when the initiator asks for mutual CHAP
// with CHAP_I/CHAP_C, returns the target's CHAP_N/CHAP_R.
// keys maps the CHAP keys of the request; empty strings mean absent.
func (c *chapServer) verify(name, resp, mutualID, mutualChallenge string, hasI, hasC bool) ([]KeyValue, *LoginError) {
	if name == "" || resp == "" {
		return nil, ErrAuthFailure("CHAP_N and CHAP_R are required after the challenge")
	}
	got, err := decodeBinary(resp)
	if err != nil {
		return nil, ErrAuthFailure("malformed CHAP_R")
	}
	want := ChapResponse(c.algo, c.id, c.creds.Secret, c.challenge)
	// Compare name and response in constant time so timing tells an
	// attacker neither which half was wrong nor how much of it matched.
	nameOK := subtle.ConstantTimeCompare([]byte(name), []byte(c.creds.Username))
	respOK := subtle.ConstantTimeCompare(got, want)
	if nameOK&respOK != 1 {
		return nil, ErrAuthFailure("CHAP response does not match")
	}
	c.state = chapDone
	if !hasI && !hasC {
		return nil, nil
	}
	// RFC 7143 12.1.3: for mutual authentication the initiator sends both
	// CHAP_I and CHAP_C.
	if !hasI || !hasC {
		return nil, ErrAuthFailure("mutual CHAP needs both CHAP_I and CHAP_C")
	}
	if c.creds.MutualSecret == "" {
		return nil, ErrAuthFailure("mutual CHAP requested but not configured")
	}
	id, ok := parseNumber(mutualID)
	if !ok || id > 255 {
		return nil, ErrAuthFailure("malformed CHAP_I")
	}
	ch, err := decodeBinary(mutualChallenge)
	if err != nil || len(ch) == 0 {
		return nil, ErrAuthFailure("malformed CHAP_C")
	}
	// RFC 7143 12.1.3: "the target MUST check [that the initiator did not
	// reuse the target's challenge] and close the iSCSI TCP connection if
	// it occurs": a reflected challenge would make us answer our own.
	if subtle.ConstantTimeCompare(ch, c.challenge) == 1 {
		return nil, ErrAuthFailure("CHAP_C reflects the target's challenge")
	}
	r := ChapResponse(c.algo, byte(id), c.creds.MutualSecret, ch)
	return []KeyValue{
		{"CHAP_N", c.creds.MutualUsername},
		{"CHAP_R", encodeHex(r)},
	}, nil
}

// checksCHAPResponse reports that step carries the initiator's CHAP
// response to the challenge the target sent (RFC 7143 12.1.3): the step
// whose answer proves or disproves the secret.
func (n *LoginNegotiator) checksCHAPResponse(step LoginStep) bool {
	if n == nil || n.err != nil || n.chap.state != chapWaitReply {
		return false
	}
	for _, kv := range step.Keys {
		if kv.Key == "CHAP_R" {
			return true
		}
	}
	return false
}
