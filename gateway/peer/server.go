package peer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// Executor runs a forwarded command: *scsi.LogicalUnit.
type Executor interface {
	ExecuteForwarded(ctx context.Context, cmd *scsi.Command) scsi.Response
}

// maxInFlightPerConn bounds the commands one connection runs at once; the
// reader stops taking new ones until some finish. The forwarding gateway's
// own command windows keep it far lower in practice.
const maxInFlightPerConn = 1024

// maxConns bounds the connections a Server holds, handshaking or
// authenticated: a cluster has a handful of gateways, each keeping one
// connection, so anything near this is a flood.
const maxConns = 64

// Accept backs off between these bounds when accepting fails (EMFILE,
// ENFILE, ECONNABORTED...): a descriptor shortage must slow the link, not
// end it.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Server executes the commands other gateways forward to this one.
type Server struct {
	// Secret is the cluster's peer secret; Self is this gateway's name,
	// bound into each session's keys.
	Secret []byte
	Self   string
	// Resolve finds the LU a command names (its WWN key); false when this
	// gateway does not serve it.
	Resolve func(lu string) (Executor, bool)
	Log     *slog.Logger

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Serve accepts connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.ln = ln
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Only a closed listener ends the link; anything else is
			// waited out.
			if backoff == 0 {
				s.log().Warn("peer link: accept failed; backing off", "err", err)
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		if len(s.conns) >= maxConns {
			s.mu.Unlock()
			s.log().Warn("peer link: connection refused, too many connections", "remote", c.RemoteAddr().String(), "max", maxConns)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close stops accepting, closes every connection (cancelling the commands
// they carry) and waits until those commands have finished.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// serverConn is one authenticated connection from another gateway.
type serverConn struct {
	s    *Server
	sess *session

	mu      sync.Mutex
	running map[uint64]context.CancelFunc
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	sess, err := serverHandshake(c, s.Secret, s.Self)
	if err != nil {
		s.log().Warn("peer link refused", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	s.log().Debug("peer link up", "remote", c.RemoteAddr().String(), "peer", sess.peer)
	sc := &serverConn{s: s, sess: sess, running: map[uint64]context.CancelFunc{}}
	ctx, cancelAll := context.WithCancel(context.Background())
	var cmds sync.WaitGroup
	defer func() {
		// The connection is gone: nobody waits for these answers, but
		// they must end before Close reports the server stopped.
		cancelAll()
		cmds.Wait()
	}()
	slots := make(chan struct{}, maxInFlightPerConn)
	for {
		f, err := sess.readFrame()
		if errors.Is(err, errTampered) || errors.Is(err, errMalformed) {
			s.log().Warn("peer link: dropping a connection whose frame failed", "remote", c.RemoteAddr().String(), "peer", sess.peer, "err", err)
			return
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log().Debug("peer link closed", "remote", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		switch f.kind {
		case kindCommand:
			q, err := decodeCommand(f.body)
			if err != nil {
				s.log().Warn("peer link: dropping a connection that sent a malformed command", "remote", c.RemoteAddr().String(), "err", err)
				return
			}
			slots <- struct{}{}
			cctx, cancel := context.WithCancel(ctx)
			sc.mu.Lock()
			sc.running[f.id] = cancel
			sc.mu.Unlock()
			cmds.Add(1)
			go func() {
				defer cmds.Done()
				defer func() { <-slots }()
				sc.run(cctx, f.id, q)
			}()
		case kindCancel:
			sc.mu.Lock()
			cancel := sc.running[f.id]
			sc.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		default:
			s.log().Warn("peer link: dropping a connection that sent an unknown frame", "remote", c.RemoteAddr().String(), "kind", f.kind)
			return
		}
	}
}

// run executes one command and writes its answer.
func (sc *serverConn) run(ctx context.Context, id uint64, q request) {
	defer func() {
		sc.mu.Lock()
		cancel := sc.running[id]
		delete(sc.running, id)
		sc.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	}()
	ex, ok := sc.s.Resolve(q.lu)
	if !ok {
		e := encoder{}
		e.str("this gateway does not serve LU " + q.lu)
		sc.write(kindRefused, id, e.b)
		return
	}
	if q.cmd.Dir&scsi.DirRead != 0 {
		q.cmd.DataIn = make([]byte, q.cmd.ExpectedLength)
	}
	resp := ex.ExecuteForwarded(ctx, &q.cmd)
	if resp.DataLen > len(q.cmd.DataIn) {
		resp.DataLen = len(q.cmd.DataIn)
	}
	sc.write(kindResponse, id, encodeResponse(resp), q.cmd.DataIn[:resp.DataLen])
}

// write sends one frame; a failed write closes the connection (the reader
// then ends and cancels what is still running).
func (sc *serverConn) write(kind byte, id uint64, parts ...[]byte) {
	if err := sc.sess.writeFrame(kind, id, parts...); err != nil {
		sc.sess.c.Close()
	}
}
