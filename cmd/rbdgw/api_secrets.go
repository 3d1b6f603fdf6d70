package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/rbdgw/rbdgw/config"
)

// Where the API's generated credentials live, under the data directory.
const (
	apiPasswordFile = "api-password"
	apiTLSDir       = "api-tls"
)

// apiPassword returns the generated API password kept in dataDir (0600),
// creating it on first start, and its path.
func apiPassword(dataDir string) (pw, path string, err error) {
	path = filepath.Join(dataDir, apiPasswordFile)
	pw, err = config.ReadSecretFile(path)
	if errors.Is(err, os.ErrNotExist) {
		pw, err = config.NewSecretFile(path)
	}
	if err != nil {
		return "", path, fmt.Errorf("API password: %w", err)
	}
	return pw, path, nil
}

// apiSelfSigned returns the API's generated certificate and key files in
// dataDir/api-tls (made on first use: ECDSA P-256, ten years, the host
// name and its addresses as names) and the certificate's SHA-256
// fingerprint, which gwcli shows on first contact.
func apiSelfSigned(dataDir string) (certPath, keyPath, fingerprint string, err error) {
	dir := filepath.Join(dataDir, apiTLSDir)
	certPath, keyPath = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	if pemCert, err := os.ReadFile(certPath); err == nil {
		fp, err := pemFingerprint(pemCert)
		return certPath, keyPath, fp, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", "", "", err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "rbdgw API " + host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  hostAddresses(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	if err := config.WriteSecretFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})); err != nil {
		return "", "", "", err
	}
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := config.WriteSecretFile(certPath, pemCert); err != nil {
		return "", "", "", err
	}
	fp, err := pemFingerprint(pemCert)
	return certPath, keyPath, fp, err
}

// pemFingerprint is the SHA-256 of a PEM certificate's DER, hex.
func pemFingerprint(b []byte) (string, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", errors.New("API certificate: no PEM block")
	}
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:]), nil
}

// hostAddresses lists this host's interface addresses, for the
// certificate's names.
func hostAddresses() []net.IP {
	var ips []net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}
	return ips
}

// loopbackAddr reports whether a listen address (host:port) binds only
// loopback: 127.0.0.0/8, ::1 or localhost. An empty host (every address)
// is not loopback.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
