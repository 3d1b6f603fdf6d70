package target

import (
	"bytes"
	"testing"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for k := range b {
		b[k] = seed + byte(k*7)
	}
	return b
}

func TestLoginReadWrite(t *testing.T) {
	env := startServer(t, nil)
	i := dial(t, env.addr)
	r := i.login(loginOpts{})
	if r.StatusClass != 0 || r.TSIH == 0 {
		t.Fatalf("login: class %d detail %d tsih %d", r.StatusClass, r.StatusDetail, r.TSIH)
	}
	data := pattern(8*512, 3)
	res := i.cmd(cdbWrite10(10, 8), uint32(len(data)), false, data, cmdOpts{})
	if res.status != 0 || res.over || res.under {
		t.Fatalf("write: %+v", res)
	}
	res = i.cmd(cdbRead10(10, 8), uint32(len(data)), true, nil, cmdOpts{})
	if res.status != 0 || !bytes.Equal(res.data, data) {
		t.Fatalf("read back: status %d, %d bytes", res.status, len(res.data))
	}
	if !res.collapsed {
		t.Fatalf("GOOD read without sense should carry status in the last Data-In")
	}
	if s := env.srv.Sessions(); len(s) != 1 || s[0].TSIH != r.TSIH {
		t.Fatalf("sessions: %+v", s)
	}
	lr := i.logout()
	if lr.Response != 0 {
		t.Fatalf("logout response %d", lr.Response)
	}
	i.expectClosed(2e9)
}
