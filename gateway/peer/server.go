package peer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"

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

// Server executes the commands other gateways forward to this one.
type Server struct {
	// Secret is the cluster's peer secret.
	Secret []byte
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
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
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
	s   *Server
	c   net.Conn
	wmu sync.Mutex // serialises frames written

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
	if err := serverHandshake(c, s.Secret); err != nil {
		s.log().Warn("peer link refused", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	sc := &serverConn{s: s, c: c, running: map[uint64]context.CancelFunc{}}
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
		f, err := readFrame(c)
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
		sc.write(header(kindRefused, id, len(e.b)), e.b, nil)
		return
	}
	if q.cmd.Dir&scsi.DirRead != 0 {
		q.cmd.DataIn = make([]byte, q.cmd.ExpectedLength)
	}
	resp := ex.ExecuteForwarded(ctx, &q.cmd)
	if resp.DataLen > len(q.cmd.DataIn) {
		resp.DataLen = len(q.cmd.DataIn)
	}
	head := encodeResponse(resp)
	data := q.cmd.DataIn[:resp.DataLen]
	sc.write(header(kindResponse, id, len(head)+len(data)), head, data)
}

// write sends one frame; a failed write closes the connection (the reader
// then ends and cancels what is still running).
func (sc *serverConn) write(h, head, data []byte) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	bufs := net.Buffers{h, head}
	if len(data) > 0 {
		bufs = append(bufs, data)
	}
	if _, err := bufs.WriteTo(sc.c); err != nil {
		sc.c.Close()
	}
}
