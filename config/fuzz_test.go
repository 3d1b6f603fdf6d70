package config

import (
	"encoding/json"
	"testing"
)

// FuzzParse feeds arbitrary YAML and JSON to the loader. Nothing may panic;
// a document that parses and validates must survive a Marshal/Parse round
// trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte("portals: [127.0.0.1:3260]\n"), false)
	f.Add([]byte(`{"disks":[{"name":"a","backend":"file:a","size":"1G"}]}`), true)
	f.Fuzz(func(t *testing.T, in []byte, isJSON bool) {
		format := FormatYAML
		if isJSON {
			format = FormatJSON
		}
		c, err := Parse(in, format)
		if err != nil {
			return
		}
		if c.Validate() != nil {
			return
		}
		for _, f2 := range []Format{FormatYAML, FormatJSON} {
			b, err := Marshal(c, f2)
			if err != nil {
				t.Fatalf("marshal a valid config: %v", err)
			}
			c2, err := Parse(b, f2)
			if err != nil {
				t.Fatalf("reparse: %v\n%s", err, b)
			}
			if err := c2.Validate(); err != nil {
				t.Fatalf("revalidate: %v", err)
			}
			j1, _ := json.Marshal(c)
			j2, _ := json.Marshal(c2)
			if string(j1) != string(j2) {
				t.Fatalf("round trip differs:\n%s\n%s", j1, j2)
			}
		}
	})
}
