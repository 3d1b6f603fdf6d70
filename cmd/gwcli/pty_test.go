package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// The real binary, built by TestMain before any test changes HOME (the
// go command finds its caches there).
var (
	binPath  string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gwcli-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "gwcli")
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		buildErr = &buildError{string(out)}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func gwcliBinary(t *testing.T) string {
	if buildErr != nil {
		t.Fatalf("build gwcli: %v", buildErr)
	}
	return binPath
}

type buildError struct{ out string }

func (e *buildError) Error() string { return e.out }

// term drives the interactive gwcli through a pseudo-terminal.
type term struct {
	t    *testing.T
	f    *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	buf  strings.Builder
	done chan struct{}
}

func startTerm(t *testing.T, env []string, args ...string) *term {
	cmd := exec.Command(gwcliBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 220})
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, f: f, cmd: cmd, done: make(chan struct{})}
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

// screen is everything written so far, control sequences removed.
func (tm *term) screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return ansi.ReplaceAllString(tm.buf.String(), "")
}

// mark returns the current output length: expect looks after it.
func (tm *term) mark() int { return len(tm.screen()) }

// termTimeout bounds each wait for the shell's output: it only catches a
// hung shell, so it is generous - a loaded CI machine (the API writes
// through etcd, disks are created) can take seconds per command.
const termTimeout = 60 * time.Second

func (tm *term) expect(from int, want string) {
	tm.t.Helper()
	deadline := time.Now().Add(termTimeout)
	for time.Now().Before(deadline) {
		if s := tm.screen(); len(s) >= from && strings.Contains(s[from:], want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := tm.screen()
	tm.t.Fatalf("no %q on the terminal after offset %d; it shows:\n%s", want, from, s[min(from, len(s)):])
}

func (tm *term) send(keys string) {
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

// run types a line, presses Enter, waits for want and then for the next
// prompt: go-prompt puts the terminal back in cooked mode while a command
// runs, and keys typed then would reach it as text.
func (tm *term) run(line, want string) {
	tm.t.Helper()
	m := tm.mark()
	tm.send(line + "\r")
	tm.expect(m, want)
	if !strings.HasSuffix(want, "> ") {
		at := strings.Index(tm.screen()[m:], want) + m + len(want)
		tm.expect(at, "> ")
	}
	tm.waitRaw()
}

// waitRaw waits until go-prompt has the terminal in raw mode again (it
// draws the prompt just before): the master side reads the slave's
// termios.
func (tm *term) waitRaw() {
	tm.t.Helper()
	deadline := time.Now().Add(termTimeout)
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
	tm.t.Fatalf("the terminal never went back to raw mode:\n%s", tm.screen())
}

// TestInteractiveShell drives the real gwcli in a pseudo-terminal through
// ceph-iscsi's documented flow (create a target, two gateways, a disk, a
// host with CHAP, give it the disk) with Tab completion, cd and ls, then
// checks the history survives a restart.
func TestInteractiveShell(t *testing.T) {
	url, store := startAPI(t, nil)
	home, _ := os.UserHomeDir()
	env := []string{"HOME=" + home, "RBDGW_API_URL=" + url, "TERM=xterm"}
	tm := startTerm(t, env)
	tm.expect(0, "/> ")
	tm.waitRaw()

	// Tab completes a path: "cd /isc" -> "cd /iscsi-targets/".
	// Each completed line below would fail as typed, so its result shows
	// the Tab worked.
	tm.send("cd /isc\t")
	tm.run("", "/iscsi-targets> ")
	tm.run("create "+tIQN, "ok")

	// Tab completes the new target's IQN from a prefix.
	tm.send("cd iqn.2026\t")
	tm.run("", "/iscsi-targets/"+tIQN+"> ")
	tm.run("cd gateways", "/gateways> ")
	tm.run("create gw1 127.0.0.1", "ok")
	tm.run("create gw2 127.0.0.2", "ok")
	tm.run("/disks create pool=rbd image=disk_1 size=90M backend=file:"+filepath.Join(t.TempDir(), "disk_1.img"), "ok")
	tm.run("cd ../disks", "/disks> ")
	// Tab completes a command's value: the disks the target does not map.
	tm.send("add rbd/d\t")
	tm.run("", "ok")
	tm.run("cd ../hosts", "/hosts> ")
	tm.run("create "+hIQN, "ok")
	tm.run("cd "+hIQN, hIQN+"> ")
	// Completion of key= names.
	tm.send("auth user\t")
	tm.run("myiscsiusername password=myiscsipassword", "ok")
	tm.run("auth username=myiscsiusername password=short", "CHAP passwords are 12-16 characters")
	tm.run("disk add rbd/disk_1", "ok")
	tm.run("ls /", "[Auth: CHAP, LUNs: 0]")
	tm.run("ls /iscsi-targets", "[Auth: None, Gateways: 2, LUNs: 1, Hosts: 1]")
	tm.run("help", "disk add <disk>")
	tm.send("exit\r")
	waitExit(t, tm)

	c, _, err := store.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Targets[0]
	if len(c.Gateways) != 2 || len(tg.LUNs) != 1 || len(tg.Hosts) != 1 || tg.Hosts[0].Auth.Password != "myiscsipassword" ||
		len(tg.Hosts[0].LUNs) != 1 {
		t.Fatalf("configuration after the shell: %+v", c)
	}

	hist, err := os.ReadFile(filepath.Join(home, historyFile))
	if err != nil || !strings.Contains(string(hist), "disk add rbd/disk_1\n") {
		t.Fatalf("history: %q %v", hist, err)
	}
	// A new shell recalls the last line with Up; Ctrl-D on an empty line
	// leaves.
	tm = startTerm(t, env)
	tm.expect(0, "/> ")
	tm.waitRaw()
	tm.waitRaw()
	m := tm.mark()
	tm.send("\x1b[A")
	tm.expect(m, "exit")
	tm.send("\r")
	waitExit(t, tm)
	tm = startTerm(t, env)
	tm.expect(0, "/> ")
	tm.waitRaw()
	tm.waitRaw()
	tm.send("\x04")
	waitExit(t, tm)
}

func waitExit(t *testing.T, tm *term) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- tm.cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("gwcli exited with %v:\n%s", err, tm.screen())
		}
	case <-time.After(termTimeout):
		t.Fatalf("gwcli did not exit:\n%s", tm.screen())
	}
}
