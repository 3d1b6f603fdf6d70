package peer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The handshake proves to each side that the other knows the cluster's
// peer secret, without sending it:
//
//	server: greeting | server nonce
//	client: MAC(secret, "client" | server nonce) | client nonce
//	server: MAC(secret, "server" | client nonce)
//
// A connection that fails it is closed; nothing else is read from it.
const greeting = "RBDGW-PEER/1"

const (
	nonceLen = 32
	macLen   = sha256.Size
)

// handshakeTimeout bounds the whole exchange.
const handshakeTimeout = 5 * time.Second

// ErrAuth is a failed handshake: the other side does not know the secret.
var ErrAuth = errors.New("peer: authentication failed")

func mac(secret []byte, role string, nonce []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(role))
	h.Write(nonce)
	return h.Sum(nil)
}

func nonce() []byte {
	b := make([]byte, nonceLen)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}

// serverHandshake authenticates the client on c.
func serverHandshake(c net.Conn, secret []byte) error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	sn := nonce()
	if _, err := c.Write(append([]byte(greeting), sn...)); err != nil {
		return err
	}
	var in [macLen + nonceLen]byte
	if _, err := io.ReadFull(c, in[:]); err != nil {
		return err
	}
	if !hmac.Equal(in[:macLen], mac(secret, "client", sn)) {
		return ErrAuth
	}
	_, err := c.Write(mac(secret, "server", in[macLen:]))
	return err
}

// clientHandshake authenticates the server on c.
func clientHandshake(c net.Conn, secret []byte) error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	var g [len(greeting) + nonceLen]byte
	if _, err := io.ReadFull(c, g[:]); err != nil {
		return err
	}
	if string(g[:len(greeting)]) != greeting {
		return fmt.Errorf("peer: %s is not a gateway peer link", c.RemoteAddr())
	}
	cn := nonce()
	if _, err := c.Write(append(mac(secret, "client", g[len(greeting):]), cn...)); err != nil {
		return err
	}
	var m [macLen]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		// The server closes the connection on a wrong MAC.
		return fmt.Errorf("%w: %s refused this gateway (%v)", ErrAuth, c.RemoteAddr(), err)
	}
	if !hmac.Equal(m[:], mac(secret, "server", cn)) {
		return fmt.Errorf("%w: %s does not know the cluster's secret", ErrAuth, c.RemoteAddr())
	}
	return nil
}
