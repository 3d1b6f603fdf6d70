package peer

import (
	"bytes"
	"net"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
)

// FuzzDecodeCommand: any body either decodes to a command within the
// limits or is refused; it never panics, and what decodes encodes back
// to the same bytes.
func FuzzDecodeCommand(f *testing.F) {
	head, _ := encodeCommand("lu0", &scsi.Command{Nexus: nexus, CDB: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirWrite, ExpectedLength: 512})
	f.Add(append(head, make([]byte, 512)...))
	f.Add(head)
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := decodeCommand(body)
		if err != nil {
			return
		}
		if len(q.cmd.CDB) == 0 || len(q.cmd.CDB) > maxCDB || len(q.cmd.DataOut) > int(q.cmd.ExpectedLength) {
			t.Fatalf("decoded a command beyond the limits: %+v", q.cmd)
		}
		again, err := encodeCommand(q.lu, &q.cmd)
		if err != nil {
			t.Fatalf("a decoded command does not encode: %v", err)
		}
		if string(append(again, q.cmd.DataOut...)) != string(body) {
			t.Fatalf("re-encoding differs:\n%x\n%x", append(again, q.cmd.DataOut...), body)
		}
	})
}

// FuzzDecodeResponse: never panics and never writes past the buffer.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(append(encodeResponse(scsi.Response{Status: 2, Sense: make([]byte, 18)}), 1, 2, 3), 8)
	f.Add([]byte{0}, 0)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		buf := make([]byte, n)
		resp, err := decodeResponse(body, buf)
		if err == nil && resp.DataLen > n {
			t.Fatalf("DataLen %d beyond a buffer of %d", resp.DataLen, n)
		}
	})
}

// readerConn is a net.Conn that reads from a byte slice.
type readerConn struct {
	net.Conn
	r *bytes.Reader
}

func (c readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// FuzzSessionReadFrame: bytes from a peer that does not hold the session
// key never open as a frame and never panic; a genuine frame opens once.
func FuzzSessionReadFrame(f *testing.F) {
	key := []byte("fuzz transcript")
	w, _ := newSession(nil, secret, key, "a", true)
	genuine := sealed(w, kindCancel, 3)
	f.Add(genuine)
	f.Add(append(genuine, genuine...))
	f.Add([]byte{0, 0, 0, 9})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r, _ := newSession(readerConn{r: bytes.NewReader(in)}, secret, key, "b", false)
		for i := 0; ; i++ {
			fr, err := r.readFrame()
			if err != nil {
				return
			}
			if i > 0 || !bytes.HasPrefix(in, genuine) || fr.kind != kindCancel || fr.id != 3 {
				t.Fatalf("frame %d opened from bytes not sealed with the key: %+v", i, fr)
			}
		}
	})
}
