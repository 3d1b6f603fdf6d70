package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rbdgw/rbdgw/internal/ptyterm"
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

// TestInteractiveShell drives the real gwcli in a pseudo-terminal through
// ceph-iscsi's documented flow (create a target, two gateways, a disk, a
// host with CHAP, give it the disk) with Tab completion, cd and ls, then
// checks the history survives a restart.
func TestInteractiveShell(t *testing.T) {
	url, store := startAPI(t, nil)
	home, _ := os.UserHomeDir()
	env := []string{"HOME=" + home, "RBDGW_API_URL=" + url, "RBDGW_API_USER=admin", "RBDGW_API_PASSWORD=gwcli-test-pw", "TERM=xterm"}
	tm := ptyterm.Start(t, gwcliBinary(t), env)
	tm.Expect(0, "/> ")
	tm.WaitRaw()

	// Tab completes a path: "cd /isc" -> "cd /iscsi-targets/".
	// Each completed line below would fail as typed, so its result shows
	// the Tab worked.
	tm.Send("cd /isc\t")
	tm.Run("", "/iscsi-targets> ")
	tm.Run("create "+tIQN, "ok")

	// Tab completes the new target's IQN from a prefix.
	tm.Send("cd iqn.2026\t")
	tm.Run("", "/iscsi-targets/"+tIQN+"> ")
	tm.Run("cd gateways", "/gateways> ")
	tm.Run("create gw1 127.0.0.1", "ok")
	tm.Run("create gw2 127.0.0.2", "ok")
	tm.Run("/disks create pool=rbd image=disk_1 size=90M backend=file:"+filepath.Join(t.TempDir(), "disk_1.img"), "ok")
	tm.Run("cd ../disks", "/disks> ")
	// Tab completes a command's value: the disks the target does not map.
	tm.Send("add rbd/d\t")
	tm.Run("", "ok")
	tm.Run("cd ../hosts", "/hosts> ")
	tm.Run("create "+hIQN, "ok")
	tm.Run("cd "+hIQN, hIQN+"> ")
	// Completion of key= names.
	tm.Send("auth user\t")
	tm.Run("myiscsiusername password=myiscsipassword", "ok")
	tm.Run("auth username=myiscsiusername password=short", "CHAP passwords are 12-16 characters")
	tm.Run("disk add rbd/disk_1", "ok")
	tm.Run("ls /", "[Auth: CHAP, LUNs: 0]")
	tm.Run("ls /iscsi-targets", "[Auth: None, Gateways: 2, LUNs: 1, Hosts: 1]")
	tm.Run("help", "disk add <disk>")
	tm.Send("exit\r")
	tm.Wait()

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
	tm = ptyterm.Start(t, gwcliBinary(t), env)
	tm.Expect(0, "/> ")
	tm.WaitRaw()
	tm.WaitRaw()
	m := tm.Mark()
	tm.Send("\x1b[A")
	tm.Expect(m, "exit")
	tm.Send("\r")
	tm.Wait()
	tm = ptyterm.Start(t, gwcliBinary(t), env)
	tm.Expect(0, "/> ")
	tm.WaitRaw()
	tm.WaitRaw()
	tm.Send("\x04")
	tm.Wait()
}
