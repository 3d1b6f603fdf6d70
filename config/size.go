package config

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a byte count written as a plain number or with a binary suffix:
// K, M, G, T (also KiB, MiB, GiB, TiB, and KB/MB/... which mean the same
// powers of 1024, as in ceph-iscsi and rbd).
type Size int64

var sizeUnits = []struct {
	suffix string
	shift  uint
}{
	{"TIB", 40}, {"GIB", 30}, {"MIB", 20}, {"KIB", 10},
	{"TB", 40}, {"GB", 30}, {"MB", 20}, {"KB", 10},
	{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10},
	{"B", 0},
}

// ParseSize parses "10G", "512M", "1048576" and the like.
func ParseSize(s string) (Size, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	var shift uint
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			shift = u.shift
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a whole number with an optional K, M, G or T suffix", s)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("size %q overflows", s)
	}
	return Size(n << shift), nil
}

// String writes the size with the largest exact suffix.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if s != 0 && s%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(s)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

func (s *Size) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return s.set(v)
}

func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: size must be a scalar", n.Line)
	}
	p, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = p
	return nil
}

func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

func (s *Size) set(v any) error {
	switch v := v.(type) {
	case string:
		p, err := ParseSize(v)
		if err != nil {
			return err
		}
		*s = p
	case float64:
		if v < 0 || v != math.Trunc(v) || v > 1<<62 {
			return fmt.Errorf("size %v: want a whole number of bytes", v)
		}
		*s = Size(v)
	default:
		return fmt.Errorf("size: want a number or a string such as \"10G\"")
	}
	return nil
}
