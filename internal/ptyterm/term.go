// Package ptyterm drives an interactive terminal program (gwcli's
// go-prompt shell) through a pseudo-terminal, for tests: it types keys as
// a typist would and waits for what the program draws.
package ptyterm

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Term is a program running in a pseudo-terminal.
type Term struct {
	t    testing.TB
	f    *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	buf  strings.Builder
	done chan struct{}
}

// Start runs bin with args in a 50x220 pseudo-terminal, env added to
// this process's environment; the program is killed when the test ends.
func Start(t testing.TB, bin string, env []string, args ...string) *Term {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 220})
	if err != nil {
		t.Fatal(err)
	}
	tm := &Term{t: t, f: f, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(tm.done)
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			tm.mu.Lock()
			tm.buf.Write(b[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		f.Close()
	})
	return tm
}

// ansi matches terminal control sequences go-prompt draws with.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\x1b[=>]`)

// Screen is everything written so far, control sequences removed.
func (tm *Term) Screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return ansi.ReplaceAllString(tm.buf.String(), "")
}

// Mark returns the current output length: Expect looks after it.
func (tm *Term) Mark() int { return len(tm.Screen()) }

// Timeout bounds each wait for the shell's output: it only catches a
// hung shell, so it is generous - a loaded CI machine (the API writes
// through etcd, disks are created) can take seconds per command.
const Timeout = 60 * time.Second

// Expect waits until want appears on the screen after offset from.
func (tm *Term) Expect(from int, want string) {
	tm.t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		if s := tm.Screen(); len(s) >= from && strings.Contains(s[from:], want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := tm.Screen()
	tm.t.Fatalf("no %q on the terminal after offset %d; it shows:\n%s", want, from, s[min(from, len(s)):])
}

// Send types keys.
func (tm *Term) Send(keys string) {
	tm.t.Helper()
	// go-prompt polls the terminal every 10 ms and takes what one read
	// returns as one key: text may come in one piece, but a control key
	// (Tab, Enter, arrows) must arrive alone, as a typist's would.
	for _, chunk := range keyChunks(keys) {
		if _, err := tm.f.Write([]byte(chunk)); err != nil {
			tm.t.Fatal(err)
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// keyChunks splits keys into runs of printable text and single control
// keys (an escape sequence stays whole).
func keyChunks(keys string) []string {
	var out []string
	for len(keys) > 0 {
		switch {
		case strings.HasPrefix(keys, "\x1b["):
			out, keys = append(out, keys[:3]), keys[3:]
		case keys[0] < 0x20 || keys[0] == 0x7f:
			out, keys = append(out, keys[:1]), keys[1:]
		default:
			i := strings.IndexFunc(keys, func(r rune) bool { return r < 0x20 || r == 0x7f })
			if i < 0 {
				i = len(keys)
			}
			out, keys = append(out, keys[:i]), keys[i:]
		}
	}
	return out
}

// Run types a line, presses Enter, waits for want and then for the next
// prompt: go-prompt puts the terminal back in cooked mode while a command
// runs, and keys typed then would reach it as text.
func (tm *Term) Run(line, want string) {
	tm.t.Helper()
	m := tm.Mark()
	tm.Send(line + "\r")
	tm.Expect(m, want)
	if !strings.HasSuffix(want, "> ") {
		at := strings.Index(tm.Screen()[m:], want) + m + len(want)
		tm.Expect(at, "> ")
	}
	tm.WaitRaw()
}

// WaitRaw waits until go-prompt has the terminal in raw mode again (it
// draws the prompt just before): the master side reads the slave's
// termios.
func (tm *Term) WaitRaw() {
	tm.t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		st, err := unix.IoctlGetTermios(int(tm.f.Fd()), unix.TCGETS)
		if err != nil {
			tm.t.Fatal(err)
		}
		if st.Lflag&unix.ICANON == 0 {
			// Raw, and the reader goroutine starts right after.
			time.Sleep(30 * time.Millisecond)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	tm.t.Fatalf("the terminal never went back to raw mode:\n%s", tm.Screen())
}

// Wait waits for the program to exit successfully.
func (tm *Term) Wait() {
	t := tm.t
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- tm.cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("gwcli exited with %v:\n%s", err, tm.Screen())
		}
	case <-time.After(Timeout):
		t.Fatalf("gwcli did not exit:\n%s", tm.Screen())
	}
}
