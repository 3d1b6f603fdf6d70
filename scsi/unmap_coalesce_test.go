package scsi

import (
	"slices"
	"testing"
)

func TestCoalesceUnmap(t *testing.T) {
	d := func(lba uint64, n uint32) UnmapDescriptor { return UnmapDescriptor{LBA: lba, Blocks: n} }
	cases := []struct {
		name     string
		in, want []UnmapDescriptor
	}{
		{"empty", nil, []UnmapDescriptor{}},
		{"zero-length dropped", []UnmapDescriptor{d(5, 0), d(9, 0)}, []UnmapDescriptor{}},
		{"one", []UnmapDescriptor{d(7, 3)}, []UnmapDescriptor{d(7, 3)}},
		{"touching one-block runs", []UnmapDescriptor{d(0, 1), d(1, 1), d(2, 1), d(3, 1)}, []UnmapDescriptor{d(0, 4)}},
		{"unsorted and overlapping", []UnmapDescriptor{d(10, 5), d(0, 4), d(12, 10), d(2, 1)}, []UnmapDescriptor{d(0, 4), d(10, 12)}},
		{"contained", []UnmapDescriptor{d(0, 100), d(10, 5)}, []UnmapDescriptor{d(0, 100)}},
		{"gap kept", []UnmapDescriptor{d(0, 1), d(2, 1)}, []UnmapDescriptor{d(0, 1), d(2, 1)}},
		{"duplicates", []UnmapDescriptor{d(4, 2), d(4, 2)}, []UnmapDescriptor{d(4, 2)}},
		{"zero inside a run", []UnmapDescriptor{d(0, 2), d(1, 0), d(2, 2)}, []UnmapDescriptor{d(0, 4)}},
	}
	for _, c := range cases {
		if got := coalesceUnmap(c.in); !slices.Equal(got, c.want) {
			t.Errorf("%s: coalesceUnmap(%v) = %v, want %v", c.name, c.in, got, c.want)
		}
	}
}
