package gwcli

import (
	"slices"
	"strings"
)

// Execute runs one command line (already split into words) in x: an
// optional path, then a command of the node there and its arguments, as
// in ceph-iscsi (`/disks create pool=rbd image=disk_1 size=90G`). A bare
// path changes directory in the shell and lists it one-shot.
func Execute(x *Scope, words []string) error {
	if len(words) == 0 {
		return nil
	}
	n, words, err := leadingPath(x, words)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		if x.Shell {
			x.NewCwd = n.Path()
			return nil
		}
		words = []string{"ls"}
	}
	cmd, used := lookup(n.Kind, words)
	if cmd == nil {
		return argErr("no command %q at %s (commands: %s)", words[0], n.Path(), strings.Join(commandWords(n.Kind), ", "))
	}
	a, err := parseArgs(cmd, n, words[used:])
	if err != nil {
		return err
	}
	for _, p := range append(slices.Clone(cmd.Pos), cmd.Keys...) {
		if v, ok := a[p.Name]; ok && p.Strict && v != "" && !slices.Contains(p.Values(x), v) {
			return argErr("%s: %s %q is not one of: %s", cmd.Name, p.Name, v, strings.Join(p.Values(x), ", "))
		}
	}
	// Commands act at the node the line names; relative paths in their
	// arguments are taken from there too.
	x.Cwd = n
	return cmd.Run(x, n, a)
}

// leadingPath takes a path off the front of the line: a word starting
// with "/" or ".", or one that is not a command here but names a node.
func leadingPath(x *Scope, words []string) (*Node, []string, error) {
	w := words[0]
	if strings.HasPrefix(w, "/") || strings.HasPrefix(w, ".") {
		n, err := Resolve(x.Cwd, w)
		return n, words[1:], err
	}
	if c, _ := lookup(x.Cwd.Kind, words); c == nil && !isCommandWord(x.Cwd.Kind, w) {
		if n, err := Resolve(x.Cwd, w); err == nil {
			return n, words[1:], nil
		}
	}
	return x.Cwd, words, nil
}

// commandWords lists the first words of the commands at a kind.
func commandWords(k Kind) []string {
	var out []string
	for _, c := range Commands(k) {
		first, _, _ := strings.Cut(c.Name, " ")
		if !slices.Contains(out, first) {
			out = append(out, first)
		}
	}
	return out
}

func isCommandWord(k Kind, w string) bool { return slices.Contains(commandWords(k), w) }
