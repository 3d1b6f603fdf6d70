package config

import (
	"context"
	"fmt"
	"testing"

	"github.com/rbdgw/rbdgw/internal/loopback"
)

// bigConfig is one target with n disks mapped as LUNs 0..n-1.
func bigConfig(n int) Config {
	var c Config
	tg := NewTarget("iqn.2026-11.io.rbdgw:big")
	for i := range n {
		d := NewDisk(fmt.Sprintf("d%05d", i), fmt.Sprintf("file:img/d%05d.img", i), 1<<20)
		c.Disks = append(c.Disks, d)
		tg.LUNs = append(tg.LUNs, LUNMap{LUNID: uint64(i), Disk: d.Name})
	}
	c.Targets = []Target{tg}
	return c
}

// BenchmarkUpdateAddLUNAt1000: one Update that adds a disk and its LUN to
// a configuration of 1000 LUNs (read everything, decode, validate, diff,
// write two keys and the epoch).
func BenchmarkUpdateAddLUNAt1000(b *testing.B) {
	const n = 1000
	run := func(b *testing.B, s Store) {
		if _, err := s.Update(context.Background(), func(c *Config) error { *c = bigConfig(n); return nil }); err != nil {
			b.Fatal(err)
		}
		i := n
		for b.Loop() {
			i++
			if _, err := s.Update(context.Background(), func(c *Config) error {
				d := NewDisk(fmt.Sprintf("d%05d", i), fmt.Sprintf("file:img/d%05d.img", i), 1<<20)
				c.Disks = append(c.Disks, d)
				c.Targets[0].LUNs = append(c.Targets[0].LUNs, LUNMap{LUNID: uint64(i % 16384), Disk: d.Name})
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("MemStore", func(b *testing.B) { run(b, NewMemStore(Config{})) })
	b.Run("EmbeddedEtcd", func(b *testing.B) {
		m, err := StartEmbeddedEtcd(b.TempDir(), loopback.FreeURL(b), loopback.FreeURL(b), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		s, err := OpenEtcd(context.Background(), m.StoreOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		run(b, s)
	})
}
