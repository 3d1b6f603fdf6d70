package target

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// startLimited starts a Server on 127.0.0.1 with the given limits; log,
// when non-nil, receives its log.
func startLimited(t testing.TB, lim Limits, log *slog.Logger) *testEnv {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startLimitedOn(t, l, lim, log)
}

func startLimitedOn(t testing.TB, l net.Listener, lim Limits, log *slog.Logger) *testEnv {
	t.Helper()
	return startLimitedDisk(t, l, lim, log, 2048)
}

// startLimitedDisk is startLimitedOn with a disk of blocks 512-byte blocks.
func startLimitedDisk(t testing.TB, l net.Listener, lim Limits, log *slog.Logger, blocks int) *testEnv {
	t.Helper()
	r := newMemRouter(blocks)
	op := DefaultOperational()
	op.NopInInterval = 0
	tg := &Target{Name: engineIQN, PortalGroupTag: 1, Op: op, OpenACL: true,
		Router: func(string) scsi.Router { return r }}
	return serveTarget(t, l, tg, r, Config{Limits: lim, Logger: log})
}

// waitFor polls cond until it holds or d passes: the machine is shared
// and loaded, so tests wait for conditions, not for fixed times.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for the Server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *syncBuffer) count(sub string) int { return strings.Count(w.String(), sub) }

func newTestLog() (*slog.Logger, *syncBuffer) {
	w := &syncBuffer{}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w
}

// failingListener fails its first Accepts with errs, then accepts from the
// real listener.
type failingListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func acceptErr(e syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", e)}
}

// A portal out of file descriptors used to end Serve, and with it the
// gateway. Now it backs off and accepts again; only a closed listener
// ends it.
func TestServeBacksOffOnAcceptErrors(t *testing.T) {
	real, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: real, errs: []error{acceptErr(syscall.EMFILE), acceptErr(syscall.ECONNABORTED),
		acceptErr(syscall.ENFILE), acceptErr(syscall.ENOBUFS)}}
	log, logs := newTestLog()
	env := startLimitedOn(t, fl, Limits{}, log)
	i := dial(t, env.addr)
	if r := i.login(loginOpts{}); r.StatusClass != 0 {
		t.Fatalf("login after accept errors: %d/%d", r.StatusClass, r.StatusDetail)
	}
	if res := i.cmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{}); res.status != 0 {
		t.Fatalf("read: %+v", res)
	}
	if n := env.srv.Stats().AcceptErrors; n != 4 {
		t.Fatalf("AcceptErrors %d, want 4", n)
	}
	// Four failures in a row, one WARN line (rate-limited per portal).
	if n := logs.count("iscsi accept failed"); n != 1 {
		t.Fatalf("%d accept failure lines, want 1:\n%s", n, logs)
	}
}

func TestServeEndsWhenItsListenerCloses(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve returned %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after its listener closed")
	}
}

// Close ends a Serve that is backing off without waiting out the delay.
func TestCloseEndsServeWhileBackingOff(t *testing.T) {
	real, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	errs := make([]error, 64)
	for k := range errs {
		errs[k] = acceptErr(syscall.EMFILE)
	}
	fl := &failingListener{Listener: real, errs: errs}
	s, err := NewServer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(fl) }()
	waitFor(t, 10*time.Second, "back-off to reach a second", func() bool { return s.Stats().AcceptErrors >= 9 })
	start := time.Now()
	s.Close()
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("Serve took %v to notice Close", d)
	}
}

func TestLimitsDefaults(t *testing.T) {
	l := Limits{}.withDefaults()
	if l.MaxConnections != DefaultMaxConnections || l.MaxPreLoginPerSource != DefaultMaxPreLoginPerSource ||
		l.MaxSessionsPerInitiator != DefaultMaxSessionsPerInitiator || l.LoginTimeout != DefaultLoginTimeout {
		t.Fatalf("defaults %+v", l)
	}
}

// expectRefused checks that the server closes nc without a byte sent by
// either side.
func expectRefused(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	n, err := nc.Read(b[:])
	if n != 0 || err == nil {
		t.Fatalf("refused connection: read %d bytes, err %v", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection beyond the cap was not closed")
	}
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// Connections beyond Limits.MaxPreLoginPerSource from one address, or
// beyond Limits.MaxConnections in all, are closed at once; a logged-in
// connection no longer counts as logging in; other sources are not
// affected by one source's cap.
func TestConnectionCaps(t *testing.T) {
	log, logs := newTestLog()
	env := startLimited(t, Limits{MaxConnections: 4, MaxPreLoginPerSource: 2, LoginTimeout: time.Minute}, log)
	st := env.srv.Stats
	c1 := dial(t, env.addr)
	c2 := dial(t, env.addr)
	waitFor(t, 10*time.Second, "two connections logging in", func() bool { return st().PreLoginConnections == 2 })
	for k := 0; k < 3; k++ {
		expectRefused(t, dialFrom(t, "127.0.0.1", env.addr))
	}
	if s := st(); s.RefusedPreLoginPerSource != 3 || s.Connections != 2 {
		t.Fatalf("after 3 refusals: %+v", s)
	}
	if n := logs.count("iscsi connection refused"); n != 1 {
		t.Fatalf("%d refusal lines for one source's burst, want 1:\n%s", n, logs)
	}
	// Another source is not held back by 127.0.0.1's cap.
	c3 := &ini{t: t, nc: dialFrom(t, "127.0.0.2", env.addr), itt: 0x100, cmdSN: 1}
	c3.pr = pduReader{r: c3.nc, maxData: 1 << 24, pool: newBufPool()}
	if r := c3.login(loginOpts{isid: 3}); r.StatusClass != 0 {
		t.Fatalf("login from 127.0.0.2: %d/%d", r.StatusClass, r.StatusDetail)
	}
	// Once c1 is logged in, 127.0.0.1 may open one more.
	if r := c1.login(loginOpts{isid: 1}); r.StatusClass != 0 {
		t.Fatalf("login: %d/%d", r.StatusClass, r.StatusDetail)
	}
	waitFor(t, 10*time.Second, "c1 out of pre-login", func() bool { return st().PreLoginConnections == 1 })
	c4 := dial(t, env.addr)
	waitFor(t, 10*time.Second, "c4 accepted", func() bool { return st().Connections == 4 })
	// Four connections: the fifth is refused whatever its source.
	expectRefused(t, dialFrom(t, "127.0.0.3", env.addr))
	if s := st(); s.RefusedMaxConnections != 1 {
		t.Fatalf("RefusedMaxConnections %d, want 1", s.RefusedMaxConnections)
	}
	// The logged-in sessions work all along.
	for _, i := range []*ini{c1, c3} {
		if res := i.cmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{}); res.status != 0 {
			t.Fatalf("read: %+v", res)
		}
	}
	_, _ = c2, c4
}

// A login beyond Limits.MaxSessionsPerInitiator is refused with 0x0302;
// reinstating a session (same ISID) is not a new one, and another
// initiator is not affected.
func TestSessionsPerInitiatorCap(t *testing.T) {
	env := startLimited(t, Limits{MaxSessionsPerInitiator: 2}, nil)
	a1, a2 := dial(t, env.addr), dial(t, env.addr)
	for k, i := range []*ini{a1, a2} {
		if r := i.login(loginOpts{isid: byte(k + 1)}); r.StatusClass != 0 {
			t.Fatalf("session %d: %d/%d", k+1, r.StatusClass, r.StatusDetail)
		}
	}
	a3 := dial(t, env.addr)
	r := a3.login(loginOpts{isid: 3})
	if got := LoginStatus(uint16(r.StatusClass)<<8 | uint16(r.StatusDetail)); got != StatusOutOfResources {
		t.Fatalf("third session: status %#04x, want %#04x", got, StatusOutOfResources)
	}
	a3.expectClosed(5 * time.Second)
	if n := env.srv.Stats().RefusedSessionsPerInitiator; n != 1 {
		t.Fatalf("RefusedSessionsPerInitiator %d", n)
	}
	b := dial(t, env.addr)
	if r := b.login(loginOpts{isid: 1, keys: map[string]string{"InitiatorName": "iqn.2026-01.io.rbdgw:other"}}); r.StatusClass != 0 {
		t.Fatalf("other initiator: %d/%d", r.StatusClass, r.StatusDetail)
	}
	// Reinstating session 2 at the cap.
	a2b := dial(t, env.addr)
	if r := a2b.login(loginOpts{isid: 2}); r.StatusClass != 0 {
		t.Fatalf("reinstatement: %d/%d", r.StatusClass, r.StatusDetail)
	}
	// A logout makes room. The name compares case-insensitively
	// (RFC 7143 4.2.7.2).
	a1.logout()
	waitFor(t, 10*time.Second, "session 1 gone", func() bool { return env.srv.Stats().Sessions == 2 })
	a4 := dial(t, env.addr)
	if r := a4.login(loginOpts{isid: 4, keys: map[string]string{"InitiatorName": "IQN.2026-01.io.rbdgw:INI"}}); r.StatusClass != 0 {
		t.Fatalf("after logout: %d/%d", r.StatusClass, r.StatusDetail)
	}
	a5 := dial(t, env.addr)
	if r := a5.login(loginOpts{isid: 5}); r.StatusClass != 3 || r.StatusDetail != 2 {
		t.Fatalf("over the cap again: %d/%d", r.StatusClass, r.StatusDetail)
	}
}

// A connection that does not finish its login in Limits.LoginTimeout is
// closed, and counted.
func TestLoginTimeout(t *testing.T) {
	env := startLimited(t, Limits{LoginTimeout: 300 * time.Millisecond}, nil)
	start := time.Now()
	i := dial(t, env.addr)
	i.expectClosed(10 * time.Second)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the login timeout", d)
	}
	waitFor(t, 10*time.Second, "the timeout counted", func() bool { return env.srv.Stats().LoginTimeouts == 1 })
	// A login that completes in time is not touched by the timer later.
	j := dial(t, env.addr)
	if r := j.login(loginOpts{}); r.StatusClass != 0 {
		t.Fatalf("login: %d/%d", r.StatusClass, r.StatusDetail)
	}
	time.Sleep(400 * time.Millisecond) // past the login timeout, on purpose
	if res := j.cmd(cdbRead10(0, 1), 512, true, nil, cmdOpts{}); res.status != 0 {
		t.Fatalf("read after the login timeout: %+v", res)
	}
}
