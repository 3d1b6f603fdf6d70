package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads a configuration file (JSON when the name ends in .json, YAML
// otherwise), fills defaults for everything the file leaves out and
// validates the result.
func Load(path string) (Config, error) {
	c, err := ParseFile(path)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseFile reads and decodes a configuration file without validating it,
// for callers that apply overrides (command-line flags) first.
func ParseFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	format := FormatYAML
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format = FormatJSON
	}
	c, err := Parse(b, format)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Format is a configuration file syntax.
type Format int

const (
	FormatYAML Format = iota
	FormatJSON
)

// Parse decodes a configuration over Default() without validating it.
// Unknown keys are errors: a misspelt control would otherwise silently keep
// its default.
func Parse(b []byte, f Format) (Config, error) {
	c := Default()
	switch f {
	case FormatJSON:
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil {
			return Config{}, err
		}
		if d.More() {
			return Config{}, errors.New("trailing data after the JSON object")
		}
	default:
		d := yaml.NewDecoder(bytes.NewReader(b))
		d.KnownFields(true)
		if err := d.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, err
		}
	}
	return c, nil
}

// Marshal writes c in the given format (YAML keys = JSON tags).
func Marshal(c Config, f Format) ([]byte, error) {
	if f == FormatJSON {
		return json.MarshalIndent(c, "", "  ")
	}
	return yaml.Marshal(c)
}

// The UnmarshalXXX methods below start from the defaults, so a file that
// names a target or disk without its controls, or with only some of them,
// gets ceph-iscsi's defaults for the rest.

type plainTarget Target
type plainDisk Disk
type plainTargetControls TargetControls
type plainDiskControls DiskControls

func (t *Target) UnmarshalJSON(b []byte) error {
	*t = Target{Controls: DefaultTargetControls()}
	return strictJSON(b, (*plainTarget)(t))
}

func (d *Disk) UnmarshalJSON(b []byte) error {
	*d = Disk{BlockSize: DefaultBlockSize, Controls: DefaultDiskControls()}
	return strictJSON(b, (*plainDisk)(d))
}

func (c *TargetControls) UnmarshalJSON(b []byte) error {
	*c = DefaultTargetControls()
	return strictJSON(b, (*plainTargetControls)(c))
}

func (c *DiskControls) UnmarshalJSON(b []byte) error {
	*c = DefaultDiskControls()
	return strictJSON(b, (*plainDiskControls)(c))
}

// strictJSON keeps DisallowUnknownFields in force below a custom
// unmarshaler (the outer decoder's setting does not propagate).
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func (t *Target) UnmarshalYAML(n *yaml.Node) error {
	*t = Target{Controls: DefaultTargetControls()}
	return strictYAML(n, (*plainTarget)(t))
}

func (d *Disk) UnmarshalYAML(n *yaml.Node) error {
	*d = Disk{BlockSize: DefaultBlockSize, Controls: DefaultDiskControls()}
	return strictYAML(n, (*plainDisk)(d))
}

func (c *TargetControls) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultTargetControls()
	return strictYAML(n, (*plainTargetControls)(c))
}

func (c *DiskControls) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultDiskControls()
	return strictYAML(n, (*plainDiskControls)(c))
}

// strictYAML decodes n into v, a pointer to a struct, refusing keys the
// struct does not have: yaml.v3's KnownFields does not reach into Node.Decode
// calls made by custom unmarshalers.
func strictYAML(n *yaml.Node, v any) error {
	if n.Kind == yaml.MappingNode {
		known := yamlKeys(reflect.TypeOf(v).Elem())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if _, ok := known[k.Value]; !ok {
				return fmt.Errorf("line %d: field %s not found in %s", k.Line, k.Value, reflect.TypeOf(v).Elem().Name())
			}
		}
	}
	return n.Decode(v)
}

func yamlKeys(t reflect.Type) map[string]struct{} {
	m := make(map[string]struct{}, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(t.Field(i).Name)
		}
		m[name] = struct{}{}
	}
	return m
}
