package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/config"
)

// SelfSigned writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns their paths and the certificate.
func selfSigned(t testing.TB, dir string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "rbdgw test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile, cert
}

// TestTLSServe serves HTTPS with a self-signed certificate: a client
// trusting it gets in, a plain HTTP one and one not trusting it do not,
// and cancelling the context stops the server.
func TestTLSServe(t *testing.T) {
	certFile, keyFile, cert := selfSigned(t, t.TempDir())
	a, err := New(Options{Store: config.NewMemStore(baseConfig()), TLSCert: certFile, TLSKey: keyFile,
		Users: map[string]string{"admin": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, "127.0.0.1:0", func(ad net.Addr) { addrc <- ad }) }()
	addr := (<-addrc).String()

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	c := &client{t: t, base: "https://" + addr, user: "admin", pass: "pw",
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	c.must(200, "GET", "/health", nil)

	if _, err := http.Get("https://" + addr + prefix + "/health"); err == nil {
		t.Fatal("a client that does not trust the certificate got in")
	}
	if resp, err := http.Get("http://" + addr + prefix + "/health"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP served")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}

	if err := (&API{opts: Options{TLSCert: "/nonexistent", TLSKey: "/nonexistent"}, log: a.log}).Serve(context.Background(), "127.0.0.1:0", nil); err == nil {
		t.Fatal("missing certificate accepted")
	}
}
