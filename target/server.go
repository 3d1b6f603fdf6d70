package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// Server is an iSCSI target portal: it accepts connections, runs their
// login and full feature phases, and hands SCSI commands to each target's
// Router.
type Server struct {
	// Immutable after NewServer.
	cfg  Config
	log  *slog.Logger
	pool *bufPool

	targets atomic.Pointer[[]*Target] // replaced whole by SetTargets

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	sessions  map[sessionKey]*session
	byTSIH    map[uint16]*session
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
		log:       cfg.Logger,
		pool:      newBufPool(),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		sessions:  map[sessionKey]*session{},
		byTSIH:    map[uint16]*session{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
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

// Serve accepts connections on l until Shutdown or Close.
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
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// connGone is called by a connection's serve loop when it ends.
func (s *Server) connGone(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, asks every session to log out (Async Message,
// RFC 7143 11.9.1 AsyncEvent 1) and waits for in-flight commands to drain
// and sessions to close, until ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
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
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return nil
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
	return se, nil
}

func (s *Server) removeSessionLocked(se *session) {
	if s.sessions[se.key] == se {
		delete(s.sessions, se.key)
	}
	if s.byTSIH[se.tsih] == se {
		delete(s.byTSIH, se.tsih)
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
