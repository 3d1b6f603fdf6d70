package peer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The handshake proves to each side that the other knows the cluster's
// peer secret, without sending it, and binds both gateways' names and
// both fresh nonces into the session's keys:
//
//	server: greeting | server nonce
//	client: str client name | client nonce | MAC(secret, "client" | T1)
//	server: str server name | MAC(secret, "server" | T2)
//
// where T1 is everything sent so far (greeting to client nonce) and T2 is
// T1 followed by the server's name. A connection that fails it is closed;
// nothing else is read from it. From T2 each direction derives its own
// AES-256-GCM key; every later frame is sealed with it under a nonce that
// counts the direction's frames, so a frame altered, dropped, replayed,
// reordered or reflected back fails to open and ends the link.
const greeting = "RBDGW-PEER/2"

const (
	nonceLen = 32
	macLen   = sha256.Size
	// maxNameLen bounds a gateway name on the wire.
	maxNameLen = 255
)

// handshakeTimeout bounds the whole exchange.
const handshakeTimeout = 5 * time.Second

// ErrAuth is a failed handshake: the other side does not know the secret.
var ErrAuth = errors.New("peer: authentication failed")

// errTampered is a frame that does not open with the session's key.
var errTampered = errors.New("peer: a frame failed authentication (altered, replayed or out of order)")

func mac(secret []byte, role string, transcript []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(role))
	h.Write(transcript)
	return h.Sum(nil)
}

func nonce() []byte {
	b := make([]byte, nonceLen)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}

// appendName appends a gateway name as a u8 length and its bytes.
func appendName(b []byte, name string) ([]byte, error) {
	if len(name) > maxNameLen {
		return nil, fmt.Errorf("peer: gateway name of %d bytes exceeds %d", len(name), maxNameLen)
	}
	return append(append(b, byte(len(name))), name...), nil
}

// readName reads a name written by appendName, returning its wire bytes.
func readName(r io.Reader) (name string, wire []byte, err error) {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", nil, err
	}
	b := make([]byte, 1+int(n[0]))
	b[0] = n[0]
	if _, err := io.ReadFull(r, b[1:]); err != nil {
		return "", nil, err
	}
	return string(b[1:]), b, nil
}

// serverHandshake authenticates the client on c and returns the session.
func serverHandshake(c net.Conn, secret []byte, self string) (*session, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	t := append([]byte(greeting), nonce()...)
	if _, err := c.Write(t); err != nil {
		return nil, err
	}
	client, wire, err := readName(c)
	if err != nil {
		return nil, err
	}
	t = append(t, wire...)
	var in [nonceLen + macLen]byte
	if _, err := io.ReadFull(c, in[:]); err != nil {
		return nil, err
	}
	t = append(t, in[:nonceLen]...)
	if !hmac.Equal(in[nonceLen:], mac(secret, "client", t)) {
		return nil, ErrAuth
	}
	if t, err = appendName(t, self); err != nil {
		return nil, err
	}
	out := append(append([]byte(nil), t[len(t)-1-len(self):]...), mac(secret, "server", t)...)
	if _, err := c.Write(out); err != nil {
		return nil, err
	}
	return newSession(c, secret, t, client, false)
}

// clientHandshake authenticates the server on c and returns the session.
func clientHandshake(c net.Conn, secret []byte, self string) (*session, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	t := make([]byte, len(greeting)+nonceLen)
	if _, err := io.ReadFull(c, t); err != nil {
		return nil, err
	}
	if string(t[:len(greeting)]) != greeting {
		return nil, fmt.Errorf("peer: %s is not a gateway peer link (or of another version)", c.RemoteAddr())
	}
	t, err := appendName(t, self)
	if err != nil {
		return nil, err
	}
	t = append(t, nonce()...)
	sent := len(greeting) + nonceLen
	out := append(append([]byte(nil), t[sent:]...), mac(secret, "client", t)...)
	if _, err := c.Write(out); err != nil {
		return nil, err
	}
	server, wire, err := readName(c)
	if err != nil {
		// The server closes the connection on a wrong MAC.
		return nil, fmt.Errorf("%w: %s refused this gateway (%v)", ErrAuth, c.RemoteAddr(), err)
	}
	t = append(t, wire...)
	var m [macLen]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		return nil, err
	}
	if !hmac.Equal(m[:], mac(secret, "server", t)) {
		return nil, fmt.Errorf("%w: %s does not know the cluster's secret", ErrAuth, c.RemoteAddr())
	}
	return newSession(c, secret, t, server, true)
}

// session is an authenticated connection: frames are sealed per
// direction. The reader side (readFrame) belongs to one goroutine; writes
// are serialised by wmu.
type session struct {
	c    net.Conn
	peer string // the other gateway's name, as it proved it

	rd   cipher.AEAD
	rseq uint64 // owned by the reading goroutine

	wmu  sync.Mutex
	wr   cipher.AEAD
	wseq uint64
	wbuf []byte
}

func newSession(c net.Conn, secret, transcript []byte, peerName string, isClient bool) (*session, error) {
	k := mac(secret, "rbdgw peer session keys", transcript)
	c2s, err := gcm(mac(k, "client to server", nil))
	if err != nil {
		return nil, err
	}
	s2c, err := gcm(mac(k, "server to client", nil))
	if err != nil {
		return nil, err
	}
	s := &session{c: c, peer: peerName, rd: c2s, wr: s2c}
	if isClient {
		s.rd, s.wr = s2c, c2s
	}
	return s, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seqNonce is the GCM nonce of a direction's frame number seq.
func seqNonce(a cipher.AEAD, seq uint64) []byte {
	n := make([]byte, a.NonceSize())
	binary.BigEndian.PutUint64(n[len(n)-8:], seq)
	return n
}

// wbufKeep bounds the write buffer a session keeps between frames.
const wbufKeep = 4 << 20

// writeFrame seals and sends one frame made of kind, id and the parts of
// its body.
func (s *session) writeFrame(kind byte, id uint64, parts ...[]byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n := frameKindIDLen
	for _, p := range parts {
		n += len(p)
	}
	total := 4 + n + s.wr.Overhead()
	if cap(s.wbuf) < total {
		s.wbuf = make([]byte, 0, total)
	}
	b := s.wbuf[:4]
	binary.BigEndian.PutUint32(b, uint32(n+s.wr.Overhead()))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, id)
	for _, p := range parts {
		b = append(b, p...)
	}
	sealed := s.wr.Seal(b[4:4], seqNonce(s.wr, s.wseq), b[4:], b[:4])
	s.wseq++
	_, err := s.c.Write(b[:4+len(sealed)])
	if cap(s.wbuf) > wbufKeep {
		s.wbuf = nil
	}
	return err
}

// readFrame reads and opens one frame; body is a fresh slice the caller
// owns. A frame that does not open ends the session (errTampered).
func (s *session) readFrame() (frame, error) {
	var h [4]byte
	if _, err := io.ReadFull(s.c, h[:]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n < uint32(frameKindIDLen+s.rd.Overhead()) || n > maxBody+uint32(frameKindIDLen+s.rd.Overhead()) {
		return frame{}, fmt.Errorf("%w: sealed frame of %d bytes", errMalformed, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(s.c, buf); err != nil {
		return frame{}, err
	}
	plain, err := s.rd.Open(buf[:0], seqNonce(s.rd, s.rseq), buf, h[:])
	if err != nil {
		return frame{}, errTampered
	}
	s.rseq++
	return frame{kind: plain[0], id: binary.BigEndian.Uint64(plain[1:frameKindIDLen]), body: plain[frameKindIDLen:]}, nil
}
