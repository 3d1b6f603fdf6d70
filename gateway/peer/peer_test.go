package peer

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/internal/netfault"
	"github.com/rbdgw/rbdgw/scsi"
)

// echoLU answers reads with the last write and records what it saw.
type echoLU struct {
	last   atomic.Pointer[scsi.Command]
	writes atomic.Int32
	block  chan struct{} // when set, commands wait for it or their ctx
	ctxErr atomic.Value
}

func (e *echoLU) ExecuteForwarded(ctx context.Context, cmd *scsi.Command) scsi.Response {
	if e.block != nil {
		select {
		case <-e.block:
		case <-ctx.Done():
			e.ctxErr.Store(ctx.Err())
			return scsi.Response{Status: scsi.StatusTaskAborted}
		}
	}
	if cmd.Dir&scsi.DirWrite != 0 {
		c := *cmd
		c.DataOut = bytes.Clone(cmd.DataOut)
		e.last.Store(&c)
		e.writes.Add(1)
		return scsi.Response{Status: scsi.StatusGood, TransferLength: len(cmd.DataOut)}
	}
	prev := e.last.Load()
	if prev == nil {
		return scsi.Response{Status: scsi.StatusCheckCondition, Sense: []byte{0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x04, 0x0A}}
	}
	n := copy(cmd.DataIn, prev.DataOut)
	return scsi.Response{Status: scsi.StatusGood, DataLen: n, TransferLength: n}
}

var secret = []byte("0123456789abcdef0123456789abcdef")

func startServer(t *testing.T, lu Executor) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Secret: secret, Resolve: func(name string) (Executor, bool) {
		if name != "lu0" {
			return nil, false
		}
		return lu, true
	}}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

var nexus = &scsi.Nexus{InitiatorPort: "iqn.2026-01.test:a,i,0x800000000001", InitiatorName: "iqn.2026-01.test:a",
	ISID: [6]byte{0x80, 0, 0, 0, 0, 1}, TargetPort: "iqn.2026-01.test:t,t,0x2", RelativeTargetPort: 2, TargetPortGroup: 2}

func TestForwardCarriesCommandsBothWays(t *testing.T) {
	lu := &echoLU{}
	_, addr := startServer(t, lu)
	c := &Client{Secret: secret}
	defer c.Close()

	// A read before any write: the owner's CHECK CONDITION comes back whole.
	rd := &scsi.Command{Nexus: nexus, CDB: []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirRead, ExpectedLength: 512, DataIn: make([]byte, 512)}
	resp, err := c.Forward(context.Background(), addr, "lu0", rd)
	if err != nil || resp.Status != scsi.StatusCheckCondition || len(resp.Sense) != 14 || resp.Sense[12] != 0x04 {
		t.Fatalf("read before write: %+v %v", resp, err)
	}
	data := bytes.Repeat([]byte{0xa5}, 4096)
	wr := &scsi.Command{Nexus: nexus, LUN: 3, Tag: 77, CDB: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0}, Dir: scsi.DirWrite, ExpectedLength: 4096, DataOut: data}
	resp, err = c.Forward(context.Background(), addr, "lu0", wr)
	if err != nil || resp.Status != scsi.StatusGood || resp.TransferLength != 4096 {
		t.Fatalf("write: %+v %v", resp, err)
	}
	got := lu.last.Load()
	if *got.Nexus != *nexus || got.LUN != 3 || got.Tag != 77 || !bytes.Equal(got.CDB, wr.CDB) || !bytes.Equal(got.DataOut, data) {
		t.Fatalf("the owner saw %+v (nexus %+v)", got, got.Nexus)
	}
	rd.DataIn = make([]byte, 4096)
	rd.ExpectedLength = 4096
	resp, err = c.Forward(context.Background(), addr, "lu0", rd)
	if err != nil || resp.Status != scsi.StatusGood || !bytes.Equal(rd.DataIn[:resp.DataLen], data) {
		t.Fatalf("read back: %+v %v", resp, err)
	}
	// An LU the owner does not serve is an error, not a SCSI answer.
	if _, err := c.Forward(context.Background(), addr, "lu9", rd); err == nil {
		t.Fatal("a command for an unknown LU succeeded")
	}
}

func TestForwardRunsCommandsConcurrently(t *testing.T) {
	lu := &echoLU{block: make(chan struct{})}
	_, addr := startServer(t, lu)
	c := &Client{Secret: secret}
	defer c.Close()
	const n = 32
	done := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			wr := &scsi.Command{Nexus: nexus, CDB: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirWrite, ExpectedLength: 512, DataOut: make([]byte, 512)}
			resp, err := c.Forward(context.Background(), addr, "lu0", wr)
			if err == nil && resp.Status != scsi.StatusGood {
				err = errors.New("not GOOD")
			}
			done <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("a command finished while the owner held them all: %v", err)
	default:
	}
	close(lu.block) // all were in flight at once; release them
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestForwardCancelReachesTheOwnerAndWaitsForIt(t *testing.T) {
	lu := &echoLU{block: make(chan struct{})}
	_, addr := startServer(t, lu)
	c := &Client{Secret: secret}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(30 * time.Millisecond); cancel() }()
	wr := &scsi.Command{Nexus: nexus, CDB: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirWrite, ExpectedLength: 512, DataOut: make([]byte, 512)}
	resp, err := c.Forward(ctx, addr, "lu0", wr)
	if err != nil || resp.Status != scsi.StatusTaskAborted {
		t.Fatalf("cancelled command: %+v %v, want the owner's TASK ABORTED", resp, err)
	}
	if e, _ := lu.ctxErr.Load().(error); !errors.Is(e, context.Canceled) {
		t.Fatalf("the owner's context ended with %v, want cancelled", e)
	}
}

func TestWrongSecretIsRefusedBothWays(t *testing.T) {
	lu := &echoLU{}
	_, addr := startServer(t, lu)
	c := &Client{Secret: []byte("not the cluster's secret")}
	defer c.Close()
	wr := &scsi.Command{Nexus: nexus, CDB: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirWrite, ExpectedLength: 512, DataOut: make([]byte, 512)}
	if _, err := c.Forward(context.Background(), addr, "lu0", wr); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong secret: %v, want ErrAuth", err)
	}
	if lu.last.Load() != nil {
		t.Fatal("a command from an unauthenticated client ran")
	}
	// A server that does not know the secret is not trusted either.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	impostor := &Server{Secret: []byte("impostor"), Resolve: func(string) (Executor, bool) { return lu, true }}
	go impostor.Serve(ln)
	defer impostor.Close()
	good := &Client{Secret: secret}
	defer good.Close()
	if _, err := good.Forward(context.Background(), ln.Addr().String(), "lu0", wr); !errors.Is(err, ErrAuth) {
		t.Fatalf("impostor server: %v, want ErrAuth", err)
	}
}

// A peer that sends garbage after authenticating is dropped; the server
// keeps serving others.
func TestMalformedFramesDropTheConnection(t *testing.T) {
	lu := &echoLU{}
	_, addr := startServer(t, lu)
	nc, sess := dialSession(t, addr, "gw-test")
	sess.writeFrame(kindCommand, 1, []byte{0, 3, 'l', 'u'}) // string length beyond the body
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := sess.readFrame(); err == nil {
		t.Fatal("the server answered a malformed command")
	}
	stillServes(t, addr)
}

// dialSession connects to addr and authenticates as self, by hand (no
// Client), so the test can write what it wants on the session.
func dialSession(t *testing.T, addr, self string) (net.Conn, *session) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	sess, err := clientHandshake(nc, secret, self)
	if err != nil {
		t.Fatal(err)
	}
	return nc, sess
}

// stillServes checks a well-behaved gateway still gets its commands run.
func stillServes(t *testing.T, addr string) {
	t.Helper()
	c := &Client{Secret: secret, Self: "gw-good"}
	defer c.Close()
	wr := &scsi.Command{Nexus: nexus, CDB: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirWrite, ExpectedLength: 512, DataOut: make([]byte, 512)}
	if resp, err := c.Forward(context.Background(), addr, "lu0", wr); err != nil || resp.Status != scsi.StatusGood {
		t.Fatalf("after a misbehaving peer: %+v %v", resp, err)
	}
}

// captureConn records what a session writes instead of sending it.
type captureConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *captureConn) Write(b []byte) (int, error) { return c.out.Write(b) }

// sealed returns the bytes sess would send for one frame, advancing its
// counter as sending would.
func sealed(sess *session, kind byte, id uint64, parts ...[]byte) []byte {
	real := sess.c
	cc := &captureConn{Conn: real}
	sess.c = cc
	sess.writeFrame(kind, id, parts...)
	sess.c = real
	return cc.out.Bytes()
}

// Every frame after the handshake is authenticated: one altered bit, a
// frame sent twice (replay) or frames swapped end the link, and the
// forwarded write never runs. Other gateways are still served.
func TestTamperedOrReplayedFramesEndTheLink(t *testing.T) {
	for name, send := range map[string]func(sess *session, nc net.Conn, frame func() []byte){
		"bit flipped in the data": func(sess *session, nc net.Conn, frame func() []byte) {
			f := frame()
			f[len(f)-40] ^= 1
			nc.Write(f)
		},
		"bit flipped in the length": func(sess *session, nc net.Conn, frame func() []byte) {
			f := frame()
			f[3] ^= 1
			nc.Write(f)
		},
		"replayed": func(sess *session, nc net.Conn, frame func() []byte) {
			f := frame()
			nc.Write(f)
			nc.Write(f)
		},
		"reordered": func(sess *session, nc net.Conn, frame func() []byte) {
			f1, f2 := frame(), frame()
			nc.Write(f2)
			nc.Write(f1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			lu := &echoLU{}
			_, addr := startServer(t, lu)
			nc, sess := dialSession(t, addr, "gw-mallory")
			wr := &scsi.Command{Nexus: nexus, CDB: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirWrite, ExpectedLength: 512, DataOut: bytes.Repeat([]byte{0xEE}, 512)}
			head, _ := encodeCommand("lu0", wr)
			id := uint64(0)
			send(sess, nc, func() []byte { id++; return sealed(sess, kindCommand, id, head, wr.DataOut) })
			// The server ends the link: reading sees EOF or a reset,
			// never an answer to a tampered command. (A frame before the
			// bad one may have been answered.)
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				f, err := sess.readFrame()
				if err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("the server kept the link open after a bad frame")
					}
					break
				}
				if name != "replayed" || f.id != 1 {
					t.Fatalf("answered frame %d after a bad frame", f.id)
				}
			}
			if want := map[bool]int32{true: 1, false: 0}[name == "replayed"]; lu.writes.Load() != want {
				t.Fatalf("the write ran %d times, want %d", lu.writes.Load(), want)
			}
			stillServes(t, addr)
		})
	}
}

// A session's keys bind both names and both nonces: two sessions of the
// same pair never share keys, and each direction has its own.
func TestSessionKeysAreFreshAndPerDirection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (*session, *session) {
		done := make(chan *session, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- nil
				return
			}
			s, _ := serverHandshake(c, secret, "gw-b")
			done <- s
		}()
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cs, err := clientHandshake(nc, secret, "gw-a")
		if err != nil {
			t.Fatal(err)
		}
		ss := <-done
		if ss == nil || ss.peer != "gw-a" || cs.peer != "gw-b" {
			t.Fatalf("names: server sees %v, client sees %q", ss, cs.peer)
		}
		t.Cleanup(func() { cs.c.Close(); ss.c.Close() })
		return cs, ss
	}
	c1, _ := pair()
	c2, _ := pair()
	f1 := sealed(c1, kindCancel, 7)
	f2 := sealed(c2, kindCancel, 7)
	if bytes.Equal(f1, f2) {
		t.Fatal("two sessions sealed the same frame alike")
	}
	// A frame the client sealed does not open as one from the server
	// (reflection).
	plain := append([]byte(nil), f1[4:]...)
	if _, err := c1.rd.Open(nil, seqNonce(c1.rd, 0), plain, f1[:4]); err == nil {
		t.Fatal("a client frame opens with the server-to-client key")
	}
}

func TestDropFailsWaitingCommands(t *testing.T) {
	lu := &echoLU{block: make(chan struct{})}
	defer close(lu.block)
	_, addr := startServer(t, lu)
	c := &Client{Secret: secret}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		wr := &scsi.Command{Nexus: nexus, CDB: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirWrite, ExpectedLength: 512, DataOut: make([]byte, 512)}
		_, err := c.Forward(context.Background(), addr, "lu0", wr)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Drop(addr)
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a command on a dropped connection succeeded")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Drop did not end the waiting command")
	}
}

// A gateway stopped with SIGSTOP still has its kernel accept connections,
// but nobody answers the handshake: Drop abandons the dial at once.
func TestDropAbandonsAHangingHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts (backlog), never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := &Client{Secret: secret}
	defer c.Close()
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		wr := &scsi.Command{Nexus: nexus, CDB: []byte{0x00, 0, 0, 0, 0, 0}}
		_, err := c.Forward(context.Background(), ln.Addr().String(), "lu0", wr)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Drop(ln.Addr().String())
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a forward to a silent gateway succeeded")
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("the dial ended %v after the drop was asked for", took)
		}
	case <-time.After(dialTimeout + time.Second):
		t.Fatal("Drop did not end the hanging handshake")
	}
}

// Accept failing with EMFILE slows the peer link down; it does not end it.
func TestAcceptErrorsDoNotEndTheServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &netfault.FlakyListener{Listener: ln}
	fl.Fails.Store(5)
	lu := &echoLU{}
	s := &Server{Secret: secret, Self: "gw-b", Resolve: func(string) (Executor, bool) { return lu, true }}
	served := make(chan error, 1)
	go func() { served <- s.Serve(fl) }()
	t.Cleanup(func() { s.Close() })
	stillServes(t, ln.Addr().String())
	select {
	case err := <-served:
		t.Fatalf("Serve returned after accept errors: %v", err)
	default:
	}
}
