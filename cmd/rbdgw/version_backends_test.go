package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/rbdgw/rbdgw/gateway"
)

// TestVersionBackends: `rbdgw version` tells whether this binary serves
// rbd: disks, in text and JSON.
func TestVersionBackends(t *testing.T) {
	want := []string{"file"}
	if gateway.RBDSupport {
		want = append(want, "rbd")
	}
	code, out, _ := run(context.Background(), "version", "-o", "json")
	var v VersionInfo
	if err := json.Unmarshal([]byte(out.String()), &v); code != ExitOK || err != nil {
		t.Fatalf("exit %d, %v: %q", code, err, out)
	}
	if !slices.Equal(v.Backends, want) {
		t.Fatalf("backends %v, want %v", v.Backends, want)
	}
	code, out, _ = run(context.Background(), "version")
	if code != ExitOK || !strings.HasSuffix(strings.TrimSpace(out.String()), " backends "+strings.Join(want, ",")) {
		t.Fatalf("exit %d: %q", code, out)
	}
}
