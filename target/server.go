package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// Server is an iSCSI target portal: it accepts connections, runs their
// login and full feature phases, and hands SCSI commands to each target's
// Router.
type Server struct {
	// Immutable after NewServer.
	cfg    Config
	limits Limits // cfg.Limits with defaults
	log    *slog.Logger
	pool   *bufPool
	warns  *logLimiter   // WARN lines about peers, one per source per interval
	budget *dataBudget   // Limits.MaxDataPerServer
	auth   *authGuard    // CHAP failure delays
	quit   chan struct{} // closed when the Server starts closing

	targets atomic.Pointer[[]*Target] // replaced whole by SetTargets
	stats   serverStats

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	preLogin  map[string]int // connections not in full feature phase, by source IP
	sessions  map[sessionKey]*session
	byTSIH    map[uint16]*session
	byName    map[string]int // sessions by lower-cased initiator name
	nextTSIH  uint16
	closing   bool
	wg        sync.WaitGroup // one per connection goroutine set

	debugChecks bool // tests: assert goroutine ownership of conn state
}

// sessionKey identifies a session for reinstatement: RFC 7143 4.4.3
// (the I_T nexus is the initiator name + ISID and the target name).
type sessionKey struct {
	initiator string
	isid      [6]byte
	target    string
}

// session is one iSCSI session. With MaxConnections=1 it has exactly one
// connection, whose serve loop owns all of its sequence state.
type session struct {
	key    sessionKey
	tsih   uint16
	params SessionParams
	nexus  scsi.Nexus
	router scsi.Router
	conn   *conn
	remote string
	start  time.Time
}

// SessionInfo describes a live session, for metrics and gwtop.
type SessionInfo struct {
	InitiatorName string
	TargetName    string
	ISID          [6]byte
	TSIH          uint16
	RemoteAddr    string
	Discovery     bool
	CmdsInFlight  int
	Since         time.Time
}

// NewServer validates cfg and returns a Server that serves nothing until
// Serve is called.
func NewServer(cfg Config) (*Server, error) {
	seen := map[string]bool{}
	for _, t := range cfg.Targets {
		if err := validateTarget(t); err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("target: duplicate target %q", t.Name)
		}
		seen[t.Name] = true
	}
	s := &Server{
		cfg:       cfg,
		limits:    cfg.Limits.withDefaults(),
		budget:    newDataBudget(cfg.Limits.withDefaults().MaxDataPerServer),
		log:       cfg.Logger,
		pool:      newBufPool(),
		warns:     newLogLimiter(logLimitEvery),
		quit:      make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		preLogin:  map[string]int{},
		sessions:  map[sessionKey]*session{},
		byTSIH:    map[uint16]*session{},
		byName:    map[string]int{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.auth = newAuthGuard(s.limits, s.log)
	ts := append([]*Target(nil), cfg.Targets...)
	s.targets.Store(&ts)
	return s, nil
}

func validateTarget(t *Target) error {
	if t == nil || t.Name == "" {
		return errors.New("target: target without a name")
	}
	if t.Router == nil {
		return fmt.Errorf("target: target %q has no Router", t.Name)
	}
	return nil
}

func (s *Server) targetList() []*Target { return *s.targets.Load() }

func (s *Server) lookupTarget(name string) *Target {
	for _, t := range s.targetList() {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("target: server closed")

// Accept back-off: after a failed Accept the loop waits acceptBackoffMin,
// doubling on each further failure up to acceptBackoffMax.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Serve accepts connections on l until Shutdown or Close, or until l is
// closed by someone else. A failed Accept never ends it otherwise: out of
// file descriptors (EMFILE, ENFILE), of buffers (ENOBUFS, ENOMEM), a
// connection aborted or reset before it was taken (ECONNABORTED,
// ECONNRESET) all leave the listener usable, so Serve backs off and
// accepts again, and logged-in sessions keep running meanwhile.
//
// Each accepted connection is admitted against Limits before anything is
// read from it: beyond MaxConnections, or beyond MaxPreLoginPerSource
// connections from its source address still logging in, it is closed at
// once, counted and logged (one line per source per few seconds).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			s.acceptFailed(l, err, backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.quit:
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		s.stats.accepted.Add(1)
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		src := sourceIP(nc.RemoteAddr())
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if r := s.admitLocked(src); r != nil {
			s.mu.Unlock()
			nc.Close()
			r.counter(&s.stats).Add(1)
			s.warnLimited("refused "+r.token+" "+src, "iscsi connection refused", "reason", r.reason,
				"source", nc.RemoteAddr().String(), "limit", r.limit)
			continue
		}
		c := newConn(s, nc, src)
		s.conns[c] = struct{}{}
		s.preLogin[src]++
		c.preLogin = true
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// acceptFailed counts and logs (rate-limited) a failed Accept.
func (s *Server) acceptFailed(l net.Listener, err error, backoff time.Duration) {
	s.stats.acceptErrors.Add(1)
	msg := "iscsi accept failed, backing off"
	if !isTemporaryAcceptError(err) {
		msg = "iscsi accept failed with an unexpected error, backing off"
	}
	s.warnLimited("accept "+l.Addr().String(), msg, "portal", l.Addr().String(), "err", err, "backoff", backoff)
}

// isTemporaryAcceptError reports errors that say nothing about the
// listener itself: resources that come back as connections close, or one
// connection that went away before it was accepted.
func isTemporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// refusal is why a connection is closed at accept.
type refusal struct {
	token   string // countError token
	reason  string
	limit   int
	counter func(*serverStats) *atomic.Uint64
}

var (
	refuseMaxConns = refusal{token: "accept_max_connections", reason: "too many connections",
		counter: func(st *serverStats) *atomic.Uint64 { return &st.refusedMaxConnections }}
	refusePreLogin = refusal{token: "accept_prelogin_per_source", reason: "too many connections logging in from this address",
		counter: func(st *serverStats) *atomic.Uint64 { return &st.refusedPreLoginPerSource }}
)

// admitLocked applies the connection caps to a new connection from src.
func (s *Server) admitLocked(src string) *refusal {
	var r refusal
	switch {
	case len(s.conns) >= s.limits.MaxConnections:
		r, r.limit = refuseMaxConns, s.limits.MaxConnections
	case s.preLogin[src] >= s.limits.MaxPreLoginPerSource:
		r, r.limit = refusePreLogin, s.limits.MaxPreLoginPerSource
	default:
		return nil
	}
	countError(r.token)
	return &r
}

// loggedIn is called by a connection's serve loop when it enters full
// feature phase: it no longer counts against its source's pre-login cap.
func (s *Server) loggedIn(c *conn) {
	s.stats.logins.Add(1)
	s.mu.Lock()
	s.leavePreLoginLocked(c)
	s.mu.Unlock()
}

func (s *Server) leavePreLoginLocked(c *conn) {
	if !c.preLogin {
		return
	}
	c.preLogin = false
	if s.preLogin[c.src]--; s.preLogin[c.src] <= 0 {
		delete(s.preLogin, c.src)
	}
}

// warnLimited logs at WARN unless a line with the same key went out in
// the last logLimitEvery; the next line that does go out says how many
// were suppressed.
func (s *Server) warnLimited(key, msg string, args ...any) {
	s.logLimited(slog.LevelWarn, key, msg, args...)
}

func (s *Server) logLimited(lvl slog.Level, key, msg string, args ...any) {
	if !s.log.Enabled(context.Background(), lvl) {
		return
	}
	ok, suppressed := s.warns.allow(key, time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	s.log.Log(context.Background(), lvl, msg, args...)
}

// sourceIP is the address a connection comes from, without its port.
func sourceIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// connGone is called by a connection's serve loop when it ends.
func (s *Server) connGone(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.leavePreLoginLocked(c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, asks every session to log out (Async Message,
// RFC 7143 11.9.1 AsyncEvent 1) and waits for in-flight commands to drain
// and sessions to close, until ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closeLocked()
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.send(ctrlMsg{kind: ctrlShutdown})
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes every listener and connection at once; in-flight commands
// are cancelled and their results dropped.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closeLocked()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return nil
}

// closeLocked marks the Server closing; Serve loops backing off wake up.
func (s *Server) closeLocked() {
	if !s.closing {
		s.closing = true
		close(s.quit)
	}
}

// SetTargets replaces the served target set. Sessions logged in to a target
// that is gone, or whose initiator the target's ACLs no longer admit, are
// dropped. Sessions of targets that stay switch to the initiator's new
// LUN map at once; when it differs from the old one the device server
// reports REPORTED LUNS DATA HAS CHANGED to the session (scsi.SwitchLUNs),
// so the initiator rescans without logging in again.
func (s *Server) SetTargets(targets []*Target) {
	ts := append([]*Target(nil), targets...)
	s.targets.Store(&ts)
	byName := map[string]*Target{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	type change struct {
		c   *conn
		msg ctrlMsg
	}
	var changes []change
	s.mu.Lock()
	for _, se := range s.sessions {
		if se.params.SessionType != SessionNormal || se.conn == nil {
			continue
		}
		t := byName[se.key.target]
		if t == nil {
			changes = append(changes, change{se.conn, ctrlMsg{kind: ctrlDrop, reason: "target removed"}})
			continue
		}
		if _, ok := matchACL(t, se.key.initiator); !ok {
			changes = append(changes, change{se.conn, ctrlMsg{kind: ctrlDrop, reason: "initiator no longer in the target's ACLs"}})
			continue
		}
		if r := t.Router(se.key.initiator); r != nil {
			changes = append(changes, change{se.conn, ctrlMsg{kind: ctrlRouter, router: r}})
		} else {
			changes = append(changes, change{se.conn, ctrlMsg{kind: ctrlDrop, reason: "no LUN map for the initiator"}})
		}
	}
	s.mu.Unlock()
	for _, ch := range changes {
		ch.c.send(ch.msg)
	}
}

// Sessions lists the live sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, se := range s.sessions {
		si := SessionInfo{
			InitiatorName: se.key.initiator, TargetName: se.key.target, ISID: se.key.isid,
			TSIH: se.tsih, RemoteAddr: se.remote, Discovery: se.params.SessionType == SessionDiscovery,
			Since: se.start,
		}
		if se.conn != nil {
			si.CmdsInFlight = int(se.conn.inflightGauge.Load())
		}
		out = append(out, si)
	}
	return out
}

// bindSession registers the session a login completes. For a leading login
// (TSIH 0) an existing session with the same initiator, ISID and target is
// reinstated: RFC 7143 6.3.5 "session reinstatement is the process of an
// initiator logging in with an ISID that is possibly active from the target's
// perspective... the target MUST ... terminate the old session". The old
// connection is told to close and we wait (bounded) for it to go so its
// tasks are aborted before the new session runs.
func (s *Server) bindSession(c *conn, p SessionParams, isid [6]byte) (*session, *LoginError) {
	key := sessionKey{initiator: p.InitiatorName, isid: isid, target: p.TargetName}
	if p.SessionType == SessionDiscovery {
		key.target = ""
	}
	s.mu.Lock()
	old := s.sessions[key]
	s.mu.Unlock()
	if old != nil && old.conn != nil && old.conn != c {
		done := old.conn.send(ctrlMsg{kind: ctrlDrop, reason: "session reinstated"})
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			return nil, &LoginError{Class: 3, Detail: 1, Reason: "old session did not close"}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		// RFC 7143 11.13.5: 0x0301 "Service Unavailable".
		return nil, &LoginError{Class: 3, Detail: 1, Reason: "server shutting down"}
	}
	if cur := s.sessions[key]; cur != nil {
		s.removeSessionLocked(cur)
	}
	name := strings.ToLower(p.InitiatorName)
	if s.byName[name] >= s.limits.MaxSessionsPerInitiator {
		s.stats.refusedSessionsPerInitiator.Add(1)
		countError("login_sessions_per_initiator")
		// RFC 7143 11.13.5: 0x0302 "Out of resources - The target has
		// insufficient session, connection, or other resources". Not 0x0206
		// "Too many connections", which counts the connections of one
		// session; class 3 also tells the initiator it may retry later,
		// once some of its sessions are gone.
		return nil, ErrOutOfResources(fmt.Sprintf("the initiator has %d sessions, the most allowed", s.limits.MaxSessionsPerInitiator))
	}
	se := &session{key: key, params: p, conn: c, remote: c.nc.RemoteAddr().String(), start: time.Now()}
	for i := 0; i < 1<<16; i++ {
		s.nextTSIH++
		// RFC 7143 11.12.6: TSIH 0 is reserved for a new session.
		if s.nextTSIH != 0 && s.byTSIH[s.nextTSIH] == nil {
			se.tsih = s.nextTSIH
			break
		}
	}
	if se.tsih == 0 {
		return nil, &LoginError{Class: 3, Detail: 2, Reason: "out of TSIHs"}
	}
	if p.SessionType == SessionNormal && p.Target != nil {
		t := p.Target
		se.nexus = scsi.Nexus{
			InitiatorPort:      fmt.Sprintf("%s,i,0x%012x", p.InitiatorName, isid[:]),
			InitiatorName:      p.InitiatorName,
			ISID:               isid,
			TargetPort:         fmt.Sprintf("%s,t,0x%04x", t.Name, t.PortalGroupTag),
			RelativeTargetPort: t.RelativeTargetPort,
			TargetPortGroup:    t.TargetPortGroup,
		}
		se.router = t.Router(p.InitiatorName)
		if se.router == nil {
			// RFC 7143 11.13.5: 0x0202 "Authorization failure".
			return nil, &LoginError{Class: 2, Detail: 2, Reason: "no LUN map for initiator"}
		}
	}
	s.sessions[key] = se
	s.byTSIH[se.tsih] = se
	s.byName[name]++
	return se, nil
}

func (s *Server) removeSessionLocked(se *session) {
	if s.sessions[se.key] == se {
		delete(s.sessions, se.key)
	}
	if s.byTSIH[se.tsih] == se {
		delete(s.byTSIH, se.tsih)
		name := strings.ToLower(se.key.initiator)
		if s.byName[name]--; s.byName[name] <= 0 {
			delete(s.byName, name)
		}
	}
}

// endSession forgets se and tells the device server its nexus is gone.
func (s *Server) endSession(se *session) {
	s.mu.Lock()
	s.removeSessionLocked(se)
	s.mu.Unlock()
	if se.router != nil {
		func() {
			defer func() { _ = recover() }()
			se.router.NexusLost(&se.nexus)
		}()
	}
}

func (s *Server) sessionByTSIH(tsih uint16) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byTSIH[tsih]
}
