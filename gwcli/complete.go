package gwcli

import (
	"slices"
	"strings"
)

// Suggestion is one completion: the text that replaces the word being
// typed, and a short description.
type Suggestion struct {
	Text        string
	Description string
}

// Complete returns the completions for the last word of line (the text
// before the cursor), from the tree and configuration in x: paths,
// command words, argument values and key= names.
func Complete(x *Scope, line string) []Suggestion {
	words, err := Split(line)
	if err != nil {
		words = strings.Fields(line)
	}
	partial := ""
	if line != "" && !strings.HasSuffix(line, " ") && len(words) > 0 {
		partial = words[len(words)-1]
		words = words[:len(words)-1]
	}
	n := x.Cwd
	if len(words) > 0 {
		var rest []string
		var err error
		if n, rest, err = leadingPath(x, words); err != nil {
			return nil
		}
		words = rest
	}
	if len(words) == 0 {
		out := prefixed(partial, commandSuggestions(n.Kind, ""))
		if n == x.Cwd {
			out = append(out, completePath(x, partial)...)
		}
		return out
	}
	if len(words) == 1 {
		if subs := commandSuggestions(n.Kind, words[0]); len(subs) > 0 {
			if c, _ := lookup(n.Kind, words); c == nil {
				return prefixed(partial, subs)
			}
		}
	}
	cmd, used := lookup(n.Kind, words)
	if cmd == nil {
		return nil
	}
	saved := x.Cwd
	x.Cwd = n // value lists (a target's disks) are the node's
	defer func() { x.Cwd = saved }()
	return completeArgs(x, cmd, n, words[used:], partial)
}

// commandSuggestions lists command words at kind k: first words when
// first is "", else the second words of commands starting with first.
func commandSuggestions(k Kind, first string) []Suggestion {
	var out []Suggestion
	seen := map[string]bool{}
	for _, c := range Commands(k) {
		w1, w2, two := strings.Cut(c.Name, " ")
		word, help := w1, c.Help
		if first != "" {
			if !two || w1 != first {
				continue
			}
			word = w2
		} else if two {
			help = w1 + " " + strings.Join(subWords(k, w1), "|")
		}
		if !seen[word] {
			seen[word] = true
			out = append(out, Suggestion{Text: word, Description: help})
		}
	}
	return out
}

func subWords(k Kind, first string) []string {
	var out []string
	for _, c := range Commands(k) {
		if w1, w2, ok := strings.Cut(c.Name, " "); ok && w1 == first {
			out = append(out, w2)
		}
	}
	return out
}

func completeArgs(x *Scope, cmd *Command, n *Node, given []string, partial string) []Suggestion {
	if k, v, ok := strings.Cut(partial, "="); ok {
		for _, p := range append(slices.Clone(cmd.Pos), cmd.Keys...) {
			if p.Name == k && p.Values != nil {
				var out []Suggestion
				for _, val := range p.Values(x) {
					if strings.HasPrefix(val, v) {
						out = append(out, Suggestion{Text: k + "=" + val, Description: p.Help})
					}
				}
				return out
			}
		}
		return nil
	}
	used := map[string]bool{}
	positional := 0
	for _, w := range given {
		if k, _, ok := strings.Cut(w, "="); ok {
			used[k] = true
		} else {
			positional++
		}
	}
	var out []Suggestion
	var pos []Param
	for _, p := range cmd.Pos {
		if !slices.Contains(p.FromNode, n.Kind) && !used[p.Name] {
			pos = append(pos, p)
		}
	}
	if positional < len(pos) {
		p := pos[positional]
		switch {
		case p.Name == "path":
			out = append(out, completePath(x, partial)...)
		case p.Values != nil:
			for _, v := range p.Values(x) {
				if strings.HasPrefix(v, partial) {
					out = append(out, Suggestion{Text: v, Description: p.Name})
				}
			}
		}
	}
	for _, p := range cmd.Keys {
		if !used[p.Name] && !slices.Contains(p.FromNode, n.Kind) && strings.HasPrefix(p.Name+"=", partial) {
			out = append(out, Suggestion{Text: p.Name + "=", Description: p.Help})
		}
	}
	return out
}

// completePath completes a path: the children of the directory part
// whose names start with the last part.
func completePath(x *Scope, partial string) []Suggestion {
	dir, base := "", partial
	if i := strings.LastIndex(partial, "/"); i >= 0 {
		dir, base = partial[:i+1], partial[i+1:]
	}
	at := x.Cwd
	if dir != "" {
		var err error
		if at, err = Resolve(x.Cwd, dir); err != nil {
			return nil
		}
	}
	var out []Suggestion
	for _, c := range at.Children {
		if strings.HasPrefix(c.Name, base) {
			text := dir + c.Name
			if len(c.Children) > 0 {
				text += "/"
			}
			out = append(out, Suggestion{Text: text, Description: c.State})
		}
	}
	if base == "" && dir == "" && at.Parent != nil {
		out = append(out, Suggestion{Text: "..", Description: "up"})
	}
	return out
}

func prefixed(p string, s []Suggestion) []Suggestion {
	var out []Suggestion
	for _, v := range s {
		if strings.HasPrefix(v.Text, p) {
			out = append(out, v)
		}
	}
	return out
}
