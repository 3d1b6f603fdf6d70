package config

import "testing"

func TestMemStoreContract(t *testing.T) {
	testStoreContract(t, func(t *testing.T) storeUnderTest {
		s := NewMemStore(Config{})
		t.Cleanup(func() { s.Close() })
		return storeUnderTest{
			client: func(*testing.T) Store { return s },
			down:   func(*testing.T) { s.SetUnavailable(true) },
			up:     func(*testing.T) { s.SetUnavailable(false) },
		}
	})
}

func TestMemStoreStartsFromInitial(t *testing.T) {
	s := NewMemStore(sampleCluster())
	defer s.Close()
	c, e := mustGet(t, s)
	want := sampleCluster().Cluster()
	want.Sort()
	if e != 1 || c.Portals != nil || len(c.Disks) != len(want.Disks) {
		t.Fatalf("epoch %d, %+v", e, c)
	}
	s.Close()
	if _, _, err := s.Get(ctxT(t)); err != ErrClosed {
		t.Fatalf("after Close: %v", err)
	}
	if _, ok := <-s.Watch(ctxT(t), 0); ok {
		t.Fatal("watch on a closed store delivered")
	}
}
