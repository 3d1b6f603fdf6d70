package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	prompt "github.com/c-bata/go-prompt"
	"golang.org/x/sys/unix"

	"github.com/rbdgw/rbdgw/gwcli"
)

// maxHistory bounds the history file read at start.
const maxHistory = 1000

// runShell reads command lines, from a terminal with go-prompt (tab
// completion, history) or, from a pipe, line by line. Each line runs
// through a fresh root command.
func runShell(ctx context.Context, o *Options) error {
	s := &Session{Client: o.client, Cwd: "/"}
	s.Home, _ = os.UserHomeDir()
	// One load up front: an unreachable API is reported at once (exit 3),
	// and completion has a tree from the first key.
	x := &gwcli.Scope{Ctx: ctx, Client: o.client, Out: o.streams.Out, Err: o.streams.ErrOut}
	if err := x.Load("/", false); err != nil {
		return err
	}
	s.Scope = x
	line := func(in string) int {
		words, err := gwcli.Split(in)
		if err != nil {
			fmt.Fprintln(o.streams.ErrOut, "gwcli:", err)
			return gwcli.ExitBadArgs
		}
		if len(words) == 0 {
			return gwcli.ExitOK
		}
		code := execute(ctx, words, o.streams, s)
		// Refresh the tree for completion after a change.
		if s.Scope != nil {
			s.Scope.Load(s.Cwd, false)
		}
		return code
	}
	f, isFile := o.streams.In.(*os.File)
	if !isFile || !isTerminal(f) {
		sc := bufio.NewScanner(o.streams.In)
		last := gwcli.ExitOK
		for !s.Exit && sc.Scan() {
			last = line(sc.Text())
		}
		if last != gwcli.ExitOK {
			return &exitCode{last}
		}
		return nil
	}
	hist := ""
	var history []string
	if s.Home != "" {
		hist = filepath.Join(s.Home, historyFile)
		history = readHistory(hist)
	}
	p := prompt.New(
		func(in string) {
			if strings.TrimSpace(in) == "" {
				return
			}
			appendHistory(hist, in)
			line(in)
		},
		func(d prompt.Document) []prompt.Suggest {
			if s.Scope == nil {
				return nil
			}
			var out []prompt.Suggest
			for _, sg := range gwcli.Complete(s.Scope, d.TextBeforeCursor()) {
				out = append(out, prompt.Suggest{Text: sg.Text, Description: sg.Description})
			}
			return out
		},
		prompt.OptionTitle("gwcli"),
		prompt.OptionHistory(history),
		prompt.OptionLivePrefix(func() (string, bool) { return s.Cwd + "> ", true }),
		prompt.OptionSetExitCheckerOnInput(func(in string, breakline bool) bool { return breakline && s.Exit }),
	)
	p.Run()
	return nil
}

// exitCode carries the last piped line's code out of the shell.
type exitCode struct{ code int }

func (e *exitCode) Error() string { return fmt.Sprintf("last command exited %d", e.code) }

func readHistory(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxHistory {
		lines = lines[len(lines)-maxHistory:]
	}
	return lines
}

func appendHistory(path, line string) {
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
