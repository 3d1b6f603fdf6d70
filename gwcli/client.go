// Package gwcli is the admin shell's logic: the ceph-iscsi style tree of
// nodes built from the configuration, path resolution, commands and their
// key=value arguments, completion, and the REST API client. Everything but
// the client is pure, so it is tested without a terminal or a server;
// cmd/gwcli wires it to cobra and go-prompt.
package gwcli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Client talks to one gateway's management API.
type Client struct {
	Base       string // "http://127.0.0.1:5000"
	User, Pass string
	HTTP       *http.Client
}

// ClientOptions say how to reach the API.
type ClientOptions struct {
	URL, User, Password string
	// CACert is a PEM file to trust (a self-signed gateway certificate);
	// Insecure skips verification altogether.
	CACert   string
	Insecure bool
	// Fingerprint pins the API's certificate by the SHA-256 of its DER
	// (hex, colons allowed), as the gateway logs it for a certificate it
	// generated: trust on first contact without copying a CA file.
	Fingerprint string
	Timeout     time.Duration
}

// NewClient checks the options and returns a client.
func NewClient(o ClientOptions) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &ArgError{Msg: fmt.Sprintf("API URL %q: want http(s)://host:port", o.URL)}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tc := &tls.Config{InsecureSkipVerify: true}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, &ArgError{Msg: fmt.Sprintf("CA certificate: %v", err)}
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &ArgError{Msg: fmt.Sprintf("CA certificate %s: no PEM certificate in it", o.CACert)}
		}
	}
	pin := strings.ToLower(strings.ReplaceAll(o.Fingerprint, ":", ""))
	if pin != "" && len(pin) != 64 {
		return nil, &ArgError{Msg: fmt.Sprintf("fingerprint %q: want the 64 hex digits of a SHA-256", o.Fingerprint)}
	}
	// Verification is done here rather than by crypto/tls, so that a
	// certificate this client does not trust is refused with its
	// fingerprint: the admin compares it with the one the gateway logged
	// and pins it (first contact with a self-signed gateway).
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		return verifyServer(cs, tc.RootCAs, pin, o.Insecure)
	}
	tr.TLSClientConfig = tc
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 90 * time.Second // image operations may take a while
	}
	return &Client{Base: strings.TrimRight(o.URL, "/") + "/api/v1", User: o.User, Pass: o.Password,
		HTTP: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// verifyServer checks the API's certificate chain and name against roots
// (the system's when nil), or its fingerprint against pin when one is
// given; insecure accepts anything.
func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, pin string, insecure bool) error {
	if insecure {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the API presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	fp := hex.EncodeToString(sum[:])
	if pin != "" {
		if fp != pin {
			return fmt.Errorf("the API's certificate has SHA-256 fingerprint %s, not the pinned %s", fp, pin)
		}
		return nil
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("%w; the certificate's SHA-256 fingerprint is %s: if it is the one the gateway logged, "+
			"pass --fingerprint %s (or --ca-cert with the gateway's <data-dir>/api-tls/api.crt)", err, fp, fp)
	}
	return nil
}

// APIError is a refusal from the API (exit code 1).
type APIError struct {
	Status int
	Msg    string
	Field  string
}

func (e *APIError) Error() string {
	if e.Field != "" && !strings.Contains(e.Msg, e.Field) {
		return fmt.Sprintf("%s (%s)", e.Msg, e.Field)
	}
	return e.Msg
}

// UnreachableError means no answer from the API (exit code 3).
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return "cannot reach the API: " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// Do sends in (JSON) and decodes the answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return &ArgError{Msg: err.Error()}
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.User != "" {
		req.SetBasicAuth(c.User, c.Pass)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return &UnreachableError{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &UnreachableError{Err: err}
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
			Field string `json:"field"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(raw)))
		}
		return &APIError{Status: resp.StatusCode, Msg: e.Error, Field: e.Field}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
		}
	}
	return nil
}

// PathEscape escapes one path segment (a disk name "pool/image" in a
// single segment).
func PathEscape(s string) string { return url.PathEscape(s) }

// ExitCode maps an error to gwcli's exit codes.
func ExitCode(err error) int {
	var ae *ArgError
	var ue *UnreachableError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ae):
		return ExitBadArgs
	case errors.As(err, &ue):
		return ExitUnreachable
	}
	return ExitFailure
}

// Exit codes, for scripts.
const (
	ExitOK          = 0
	ExitFailure     = 1 // the API refused or failed the command
	ExitBadArgs     = 2 // unknown command, path or argument
	ExitUnreachable = 3 // no answer from the API
)

// ArgError is a bad command line (exit code 2).
type ArgError struct{ Msg string }

func (e *ArgError) Error() string { return e.Msg }

func argErr(format string, args ...any) error { return &ArgError{Msg: fmt.Sprintf(format, args...)} }
