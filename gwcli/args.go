package gwcli

import (
	"slices"
	"strings"
)

// Split breaks a shell line into words: blanks separate, single and
// double quotes group, a backslash escapes the next character.
func Split(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	esc := false
	for _, r := range line {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\' && quote != '\'':
			esc, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, argErr("unterminated %c quote", quote)
	}
	if esc {
		return nil, argErr("line ends with a backslash")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// Param is one argument of a command: positional (in order) or key=value.
// A positional one may also be given as name=value.
type Param struct {
	Name     string
	Required bool
	Help     string
	// Values lists what completion offers (and, when Strict, the only
	// values accepted).
	Values func(x *Scope) []string
	Strict bool
	// FromNode takes the value from the current node when the command
	// runs at a node of that kind (a disk's own commands need no disk
	// argument).
	FromNode []Kind
}

// Args are parsed arguments by name.
type Args map[string]string

// Has reports whether an argument was given.
func (a Args) Has(name string) bool { _, ok := a[name]; return ok }

// parseArgs matches words against the command's parameters at node n.
func parseArgs(cmd *Command, n *Node, words []string) (Args, error) {
	a := Args{}
	var pos []Param
	for _, p := range cmd.Pos {
		if slices.Contains(p.FromNode, n.Kind) {
			a[p.Name] = n.Ref
			continue
		}
		pos = append(pos, p)
	}
	known := func(name string) bool {
		return slices.ContainsFunc(pos, func(p Param) bool { return p.Name == name }) ||
			slices.ContainsFunc(cmd.Keys, func(p Param) bool { return p.Name == name })
	}
	for _, p := range cmd.Keys {
		if slices.Contains(p.FromNode, n.Kind) {
			a[p.Name] = n.Ref
		}
	}
	next := 0
	for _, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok && k != "" && known(k) {
			if _, dup := a[k]; dup {
				return nil, argErr("%s: %s given twice", cmd.Name, k)
			}
			a[k] = v
			continue
		} else if ok && k != "" && len(cmd.Keys) > 0 && !strings.Contains(k, "/") {
			return nil, argErr("%s: unknown argument %q (takes %s)", cmd.Name, k, cmd.usageArgs(n))
		}
		for next < len(pos) && a.Has(pos[next].Name) {
			next++
		}
		if next >= len(pos) {
			return nil, argErr("%s: unexpected argument %q (usage: %s %s)", cmd.Name, w, cmd.Name, cmd.usageArgs(n))
		}
		a[pos[next].Name] = w
		next++
	}
	for _, p := range append(slices.Clone(pos), cmd.Keys...) {
		v, given := a[p.Name]
		if p.Required && (!given || v == "") {
			return nil, argErr("%s: %s is required (usage: %s %s)", cmd.Name, p.Name, cmd.Name, cmd.usageArgs(n))
		}
	}
	return a, nil
}
