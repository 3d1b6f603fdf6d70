// Package api is the gateway's management REST API: JSON over HTTP(S),
// basic auth always, TLS off loopback, a trusted IP list. It is the only
// writer of the cluster configuration: every write is one config.Store
// Update, so validation is config's and a refused change writes nothing.
// gwcli and any automation are its clients; docs/api.md lists the
// resources.
package api

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/netutil"

	"github.com/rbdgw/rbdgw/config"
)

// DefaultPort is the API's port (ceph-iscsi's rbd-target-api uses 5000 too).
const DefaultPort = 5000

// maxBody caps a request body: the largest is a whole configuration
// (PUT /config), a few MB even with thousands of LUNs.
const maxBody = 16 << 20

// Bounds on what one client can hold of the server: a slow or idle
// client must not keep a connection (or a goroutine and its buffers)
// forever, nor may many of them exhaust the process's descriptors.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second // a whole 16 MiB body at a slow link
	writeTimeout      = 5 * time.Minute  // image operations may take minutes
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// MaxConnections caps the API's open connections.
	MaxConnections = 128
)

// Options inject everything the API works with.
type Options struct {
	// Store holds the configuration; required.
	Store config.Store
	// Images manages RBD images (create, resize, snapshots...). Nil on a
	// gateway without Ceph: file-backed disks need no image service, and
	// image operations answer 501.
	Images ImageService
	// Health and SysInfo describe this gateway for /health and /sysinfo;
	// nil gives a minimal answer.
	Health  func(context.Context) any
	SysInfo func(context.Context) any
	// Users are the basic-auth accounts (user -> password); required: the
	// API never serves without credentials.
	Users map[string]string
	// TrustedIPs are the client networks allowed in; others get 403.
	// Empty means loopback only, so an API started without thought is
	// not open to the network.
	TrustedIPs []netip.Prefix
	// ImageRoots are the directories this gateway opens file: images in
	// (config.ImageRoots); a file: disk elsewhere is refused at POST.
	// Empty: relative paths only.
	ImageRoots []string
	// TLSCert and TLSKey are PEM files; both empty serves plain HTTP,
	// which Serve allows only on a loopback address.
	TLSCert, TLSKey string
	// Logger gets one line per write and every server-side failure.
	Logger *slog.Logger
}

// API is the handler; build it with New.
type API struct {
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	trusted []netip.Prefix
}

// loopback is the default trusted list.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// New checks the options and returns the API handler.
func New(o Options) (*API, error) {
	if o.Store == nil {
		return nil, errors.New("api: a config store is required")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("api: TLS needs both a certificate and a key")
	}
	if len(o.Users) == 0 {
		return nil, errors.New("api: refusing to serve without credentials (no API user)")
	}
	for u, p := range o.Users {
		if u == "" || p == "" {
			return nil, errors.New("api: an API user needs a name and a password")
		}
	}
	a := &API{opts: o, log: o.Logger, mux: http.NewServeMux(), trusted: o.TrustedIPs}
	if a.log == nil {
		a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(a.trusted) == 0 {
		a.trusted = loopback
	}
	a.routes()
	return a, nil
}

// ServeHTTP checks the client's address, then its credentials, then
// dispatches.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.trustedAddr(r.RemoteAddr) {
		writeError(w, &Error{Status: http.StatusForbidden, Msg: "client address " + r.RemoteAddr + " is not in the trusted IP list"})
		return
	}
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="rbdgw"`)
		writeError(w, &Error{Status: http.StatusUnauthorized, Msg: "basic auth credentials missing or wrong"})
		return
	}
	if err := sameOrigin(r); err != nil {
		writeError(w, err)
		return
	}
	if err := jsonBody(r); err != nil {
		writeError(w, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	a.mux.ServeHTTP(w, r)
}

func (a *API) trustedAddr(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range a.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// sameOrigin refuses a request a browser sent on behalf of another site
// (cross-site request forgery: a page on the admin's desk posting to the
// API with the browser's cached basic-auth credentials). Browsers name
// the page's origin in Origin and, lately, Sec-Fetch-Site; tools such as
// gwcli and curl send neither.
func sameOrigin(r *http.Request) *Error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return &Error{Status: http.StatusForbidden, Msg: "cross-origin request refused (Sec-Fetch-Site: " + site + ")"}
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	if !strings.EqualFold(origin, scheme+r.Host) {
		return &Error{Status: http.StatusForbidden, Msg: "cross-origin request refused (Origin " + origin + ")"}
	}
	return nil
}

// jsonBody refuses a request body that is not declared JSON. A browser
// sends text/plain, form and multipart bodies cross-site without asking
// the server first (no CORS preflight); requiring application/json takes
// that path away and keeps every body on one decoder.
func jsonBody(r *http.Request) *Error {
	if r.ContentLength == 0 && r.Header.Get("Transfer-Encoding") == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &Error{Status: http.StatusUnsupportedMediaType, Msg: "request bodies must be JSON (Content-Type: application/json)"}
	}
	return nil
}

func (a *API) authorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	want, known := a.opts.Users[u]
	// Compare even for an unknown user, so timing does not tell names.
	if !known {
		want = "\x00not a password"
	}
	return subtle.ConstantTimeCompare([]byte(p), []byte(want)) == 1 && known
}

// Serve listens on addr (host:port) and serves until ctx ends, then shuts
// down within a few seconds. ready, if not nil, gets the bound address
// once the listener is open (addr may use port 0).
func (a *API) Serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", addr, err)
	}
	return a.ServeListener(ctx, ln, ready)
}

// ServeListener serves on an open listener (closing it at the end).
// Without TLS it serves only on a loopback address: credentials and CHAP
// secrets must not cross a network in clear.
func (a *API) ServeListener(ctx context.Context, ln net.Listener, ready func(net.Addr)) error {
	if a.opts.TLSCert == "" && !isLoopback(ln.Addr()) {
		ln.Close()
		return fmt.Errorf("api: plain HTTP on %s, which is not a loopback address: give a TLS certificate", ln.Addr())
	}
	ln = netutil.LimitListener(ln, MaxConnections)
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if a.opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.opts.TLSCert, a.opts.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("api: TLS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	a.log.Info("management API listening", "addr", ln.Addr().String(), "tls", a.opts.TLSCert != "")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// isLoopback reports whether a listener's address is a loopback one.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
