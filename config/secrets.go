package config

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// sealedPrefix marks a CHAP password the store keeps encrypted.
const sealedPrefix = "enc:v1:"

// SecretKeySize is the length of a secret key: AES-256.
const SecretKeySize = 32

// SecretBox encrypts the CHAP passwords the store writes, so that etcd
// (its backups, its snapshots, anyone with read access to its keys) never
// holds them in clear. Everything else in the configuration stays
// readable with etcdctl.
//
// Encryption is AES-256-GCM with a synthetic nonce, HMAC-SHA256 of the
// password under a second key derived from the same secret: the same
// password always seals to the same text. That is deliberate: the store
// writes only keys whose bytes changed, and a random nonce would rewrite
// every key holding a password on every update. It reveals only that two
// sealed passwords are equal.
type SecretBox struct {
	aead   cipher.AEAD
	macKey []byte
}

// NewSecretBox returns a box for a 32-byte key.
func NewSecretBox(key []byte) (*SecretBox, error) {
	if len(key) != SecretKeySize {
		return nil, fmt.Errorf("secret key: %d bytes, want %d", len(key), SecretKeySize)
	}
	encKey := derive(key, "rbdgw config secrets: encryption")
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &SecretBox{aead: aead, macKey: derive(key, "rbdgw config secrets: nonce")}, nil
}

// LoadSecretKey reads a key file: 32 bytes, base64 encoded (as `head -c
// 32 /dev/urandom | base64` writes it). The file should be readable by the
// gateway's user only.
func LoadSecretKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != SecretKeySize {
		return nil, fmt.Errorf("secret key file %s: want %d bytes in base64 (head -c %d /dev/urandom | base64)", path, SecretKeySize, SecretKeySize)
	}
	return key, nil
}

func derive(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

func (b *SecretBox) seal(plain string) string {
	if plain == "" {
		return ""
	}
	m := hmac.New(sha256.New, b.macKey)
	m.Write([]byte(plain))
	nonce := m.Sum(nil)[:b.aead.NonceSize()]
	out := b.aead.Seal(append([]byte(nil), nonce...), nonce, []byte(plain), nil)
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(out)
}

// errSealed says a sealed password was read without the key.
var errSealed = errors.New("a CHAP password is stored encrypted; configure the secret key (--secret-key-file) to read it")

// open decrypts a sealed password; a password without the prefix was
// stored in clear (before a key was configured) and is returned as is.
func (b *SecretBox) open(s string) (string, error) {
	enc, sealed := strings.CutPrefix(s, sealedPrefix)
	if !sealed {
		return s, nil
	}
	if b == nil {
		return "", errSealed
	}
	raw, err := base64.RawStdEncoding.DecodeString(enc)
	n := b.aead.NonceSize()
	if err != nil || len(raw) < n {
		return "", errors.New("a sealed CHAP password is malformed")
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], nil)
	if err != nil {
		return "", errors.New("a sealed CHAP password does not open with the configured secret key (another key?)")
	}
	return string(plain), nil
}

// sealCHAP returns c with its passwords sealed; a nil box seals nothing.
func (b *SecretBox) sealCHAP(c CHAP) CHAP {
	if b != nil {
		c.Password, c.MutualPassword = b.seal(c.Password), b.seal(c.MutualPassword)
	}
	return c
}

// openCHAP opens c's passwords in place.
func (b *SecretBox) openCHAP(c *CHAP) error {
	var err error
	if c.Password, err = b.open(c.Password); err != nil {
		return err
	}
	c.MutualPassword, err = b.open(c.MutualPassword)
	return err
}

// NewSecretFile writes a fresh random secret (hex) to path, readable by
// its owner alone, refusing to replace a file (or follow a symlink) that
// is already there, and returns it.
func NewSecretFile(path string) (string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s := hex.EncodeToString(raw)
	if err := WriteSecretFile(path, []byte(s+"\n")); err != nil {
		return "", err
	}
	return s, nil
}

// WriteSecretFile creates path (0600, O_EXCL) with b, synced.
func WriteSecretFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadSecretFile returns a secret file's trimmed content ("" and the
// error when it cannot be read; an empty file is an error).
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}
