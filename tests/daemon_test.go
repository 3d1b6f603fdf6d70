package tests

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// daemon is one long-running process started by a test. It is stopped by
// PID only: SIGTERM, then SIGKILL after a grace period.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result, valid after done
	log  string        // file holding stdout and stderr

	stopRequested atomic.Bool // Stop was called: an exit is expected
}

var (
	daemonsMu sync.Mutex
	daemons   = map[*daemon]bool{} // live daemons, for killAllDaemons
)

// startDaemon starts bin with args, output appended to logPath.
func startDaemon(name, logPath string, bin string, args ...string) (*daemon, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== %s: %s %v\n", time.Now().Format(time.RFC3339Nano), bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	// The kernel kills the daemon if the test binary dies without running
	// its cleanups (SIGKILL from a CI timeout, for instance).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	daemonsMu.Lock()
	daemons[d] = true
	daemonsMu.Unlock()
	go func() {
		d.err = cmd.Wait()
		daemonsMu.Lock()
		delete(daemons, d)
		daemonsMu.Unlock()
		close(d.done)
	}()
	return d, nil
}

// PID is the process id.
func (d *daemon) PID() int { return d.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (d *daemon) Exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to grace, then SIGKILLs the process (by
// PID; its process group too, as it may have forked helpers). It returns
// an error if SIGKILL was needed.
func (d *daemon) Stop(grace time.Duration) error {
	d.stopRequested.Store(true)
	if exited, _ := d.Exited(); exited {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-d.PID(), syscall.SIGKILL)
	_ = d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", d.name, d.PID(), grace)
}

// killAllDaemons SIGKILLs every daemon still running.
func killAllDaemons() {
	daemonsMu.Lock()
	var live []*daemon
	for d := range daemons {
		live = append(live, d)
	}
	daemonsMu.Unlock()
	for _, d := range live {
		_ = syscall.Kill(-d.PID(), syscall.SIGKILL)
		_ = d.cmd.Process.Kill()
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPortal waits until addr accepts TCP connections, failing early if d
// exits.
func waitPortal(d *daemon, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if exited, err := d.Exited(); exited {
			return fmt.Errorf("%s exited before its portal %s accepted (%v); log %s:\n%s", d.name, addr, err, d.log, logTail(d.log, 2000))
		}
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: portal %s not accepting after %v: %v; log %s", d.name, addr, timeout, err, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail returns the last n bytes of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// errNotUp is wrapped by start failures worth retrying with a new port.
var errNotUp = errors.New("not up")

func itoa(n int) string { return strconv.Itoa(n) }
