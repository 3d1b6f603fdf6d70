package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The multi-gateway tests (issue 4): two rbdgw processes, gw-a on
// 127.0.0.1 and gw-b on 127.0.0.2, serve the same file-backed LUs from one
// etcd cluster (multigw_harness_test.go), as docs/multipath.md describes.

// TestMultiGatewayALUA: each gateway is one target port group; every path
// reports the same states (one owner Active/Optimized, the other
// Active/Non-optimized), the same LU identity and its own relative port,
// and discovery through one portal lists both gateways' portals.
func TestMultiGatewayALUA(t *testing.T) {
	c := startMultiGateway(t, 1, 1)
	owner, v, err := c.waitOwner(0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("owner %s; RTPG %v", owner.name, v)
	for _, g := range c.gws {
		st := v[g.name]
		for _, grp := range st {
			if len(grp.Ports) != 1 || grp.Ports[0] != grp.ID {
				t.Errorf("via %s: %v: want one relative port numbered as the group", g.name, grp)
			}
		}
	}

	a, err := c.identity(c.gws[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.identity(c.gws[1], 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VPD 83h: %s naa %x port %d tpg %d; %s naa %x port %d tpg %d",
		c.gws[0].name, a.naa, a.relPort, a.tpg, c.gws[1].name, b.naa, b.relPort, b.tpg)
	if !bytes.Equal(a.naa, b.naa) {
		t.Errorf("the paths report different LU designators: %x vs %x", a.naa, b.naa)
	}
	if len(a.naa) != 16 || a.naa[0]>>4 != 6 || fmt.Sprintf("%x", a.naa) != c.wwns[0] {
		t.Errorf("NAA designator %x: want the configured NAA 6 WWN %s", a.naa, c.wwns[0])
	}
	if a.relPort == b.relPort || a.tpg == b.tpg {
		t.Errorf("both paths report relative port %d/%d, port group %d/%d: want distinct", a.relPort, b.relPort, a.tpg, b.tpg)
	}

	needTools(t, "iscsi-ls")
	out, err := run(20*time.Second, "iscsi-ls", "-i", initiator1, "iscsi://"+c.gws[0].portal)
	if err != nil {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	t.Logf("SendTargets through %s:\n%s", c.gws[0].name, out)
	for _, g := range c.gws {
		if !strings.Contains(out, g.portal) {
			t.Errorf("SendTargets through %s does not list %s's portal %s", c.gws[0].name, g.name, g.portal)
		}
	}
}

// TestMultiGatewayFailover: a multipathing writer loses the owner to
// kill -9 five times; the survivor acknowledges writes again within a few
// seconds (median at most 5 s) and every acknowledged write is there.
func TestMultiGatewayFailover(t *testing.T) {
	c := startMultiGateway(t, 1, 1)
	w := c.newWriter(initiator1, 0, 1, 0, mgDiskSize/mpBytes)
	var times []time.Duration
	for run := 1; run <= 5; run++ {
		owner, _, err := c.waitOwner(0, 15*time.Second)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		w.reset()
		w.use(owner)
		stop := runWriter(w)
		time.Sleep(time.Second)
		acks := w.Acks()
		if len(acks) == 0 {
			t.Fatalf("run %d: no write acknowledged in 1 s (retries %v): %v", run, w.Retries(), stop())
		}
		// The owner is the gateway whose path accepts the writes.
		victim := acks[len(acks)-1].gw
		survivor := c.other(victim)
		killed := time.Now()
		c.kill(victim)
		var first mpAck
		for {
			a, ok := w.firstAckAfter(survivor, killed)
			if ok {
				first = a
				break
			}
			if time.Since(killed) > 20*time.Second {
				t.Fatalf("run %d: %s acknowledged no write within 20 s of %s's death (retries %v): %v",
					run, survivor.name, victim.name, w.Retries(), stop())
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := first.at.Sub(killed)
		times = append(times, took)
		time.Sleep(time.Second)
		if err := stop(); err != nil {
			t.Fatalf("run %d: writer: %v", run, err)
		}
		checked, err := w.verify(survivor)
		t.Logf("run %d: killed owner %s after %d writes; first write acknowledged by %s %v later; %d writes checked; retries %v",
			run, victim.name, len(acks), survivor.name, took.Round(time.Millisecond), checked, w.Retries())
		if err != nil {
			t.Errorf("run %d: %v", run, err)
		}
		if err := c.start(victim); err != nil {
			t.Fatalf("run %d: restarting %s: %v", run, victim.name, err)
		}
	}
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	t.Logf("failover times %v, median %v", times, median.Round(time.Millisecond))
	if median > 5*time.Second {
		t.Errorf("median failover %v exceeds 5 s", median)
	}
}

// TestMultiGatewaySIGSTOPFencing: an owner stopped (SIGSTOP) with a write
// in its socket loses the LU to the other gateway; when it resumes, that
// write must not land (its lease is gone: it serves nothing), and it
// rejoins as a non-owner.
func TestMultiGatewaySIGSTOPFencing(t *testing.T) {
	c, owner := startOwned(t, 1, 1)
	survivor := c.other(owner)
	const lba = 4096
	x, y := mpPattern(0xaa, 1, lba), mpPattern(0xbb, 2, lba)

	stale, err := c.dial(owner, initiator1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	stale.timeout = time.Minute
	if r, err := stale.Write10(lba, mpPattern(0x11, 0, lba)); err != nil || r.Status != 0 {
		t.Fatalf("a write through the owner %s before the stop: %v %v", owner.name, r, err)
	}

	if err := syscall.Kill(owner.d.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// kill returns once the signal is queued; a thread of the owner that
	// is running at that moment goes on for a little while and could
	// still take X in. X must arrive at a process that is really stopped.
	if err := waitStopped(owner.d.PID(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(owner.d.PID(), syscall.SIGCONT)
		}
	}
	defer resume()
	type outcome struct {
		r   scsiResult
		err error
		at  time.Time
	}
	xDone := make(chan outcome, 1)
	go func() {
		// X sits in the stopped owner's socket. A unit attention means X
		// was not executed: send it again, as an initiator would.
		for i := 0; ; i++ {
			r, err := stale.Write10(lba, x)
			if err != nil || !isUA(r) || i == 10 {
				xDone <- outcome{r, err, time.Now()}
				return
			}
			t.Logf("X after SIGCONT: %s; sending it again", r)
		}
	}()

	// The survivor takes the LU once the stopped owner's lease expires.
	s, err := c.dial(survivor, initiator2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for {
		r, err := s.Write10(lba, y)
		if err != nil {
			t.Fatalf("writing Y through %s: %v", survivor.name, err)
		}
		if r.Status == 0 {
			break
		}
		if !isUA(r) && !isNotReady(r) {
			t.Fatalf("writing Y through %s: %s", survivor.name, r)
		}
		if time.Since(stopped) > 20*time.Second {
			t.Fatalf("%s did not take the LU within 20 s of %s's SIGSTOP: %s", survivor.name, owner.name, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s stopped; %s acknowledged Y %v later", owner.name, survivor.name, time.Since(stopped).Round(time.Millisecond))
	select {
	case o := <-xDone:
		t.Fatalf("the stopped owner answered X: %v %v", o.r, o.err)
	default:
	}

	resume()
	resumedAt := time.Now()
	select {
	case o := <-xDone:
		switch {
		case o.err != nil:
			t.Logf("X after SIGCONT: connection dropped after %v: %v", o.at.Sub(resumedAt).Round(time.Millisecond), o.err)
		case o.r.Status == 0:
			t.Errorf("X came back GOOD from %s after SIGCONT: a fenced owner wrote", owner.name)
		case o.r.Status == 0x02 && o.r.SenseKey() == "02/04/0a":
			t.Logf("X after SIGCONT: %s, %v later", o.r, o.at.Sub(resumedAt).Round(time.Millisecond))
		default:
			t.Errorf("X after SIGCONT: %s; want NOT READY 04/0A or a dropped connection", o.r)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no answer to X within 30 s of SIGCONT")
	}
	check := func(when string) {
		got, err := s.Read10(lba, mpBlocks)
		if err != nil {
			t.Fatalf("reading back %s: %v", when, err)
		}
		if !bytes.Equal(got, y) {
			t.Errorf("lba %d %s holds writer %#x write %d, want Y", lba, when, got[12], binary.BigEndian.Uint32(got[4:]))
		}
	}
	check("after SIGCONT")
	newOwner, v, err := c.waitOwner(0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if newOwner != survivor {
		t.Errorf("after rejoining, %s owns the LU, want %s: %v", newOwner.name, survivor.name, v)
	}
	t.Logf("%s rejoined: %v", owner.name, v)
	check("after the rejoin")
}

// TestMultiGatewayContention: two initiators pinned to different gateways
// write for 30 s; ownership is damped (MinHold, ContendedHold) instead of
// ping-ponging: an observer polling RTPG sees at most 3 moves, and both
// initiators' writes are acknowledged all along (the non-owner forwards).
func TestMultiGatewayContention(t *testing.T) {
	c, first := startOwned(t, 1, 1)
	half := uint32(mgDiskSize / 512 / 2)
	var writers []*mpWriter
	var stops []func() error
	for i, g := range c.gws {
		w := c.newWriter([]string{initiator1, initiator2}[i], 0, byte(0x10+i), uint32(i)*half, half/mpBlocks)
		// A busy owner keeps the LU ContendedHold (60 s); meanwhile the
		// non-owner forwards its initiator's writes to the owner.
		w.pinned, w.patience, w.limit = g, 0, 5*time.Millisecond
		writers = append(writers, w)
		stops = append(stops, runWriter(w))
	}
	obs, err := c.dial(c.gws[0], initiator3, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	owner, moves, polls := first, 0, 0
	var history []string
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		st, err := obs.RTPG()
		if err != nil {
			t.Fatalf("RTPG through %s: %v", c.gws[0].name, err)
		}
		polls++
		for _, g := range st {
			if o := c.byTPG(g.ID); g.State == aluaOptimized && o != owner {
				moves++
				history = append(history, fmt.Sprintf("%s -> %s at +%v", owner.name, o.name, (30*time.Second-time.Until(end)).Round(100*time.Millisecond)))
				owner = o
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i, stop := range stops {
		if err := stop(); err != nil {
			t.Errorf("writer %d (pinned to %s): %v", i, c.gws[i].name, err)
		}
	}
	t.Logf("owner at the start %s; %d moves in %d polls %v", first.name, moves, polls, history)
	for i, w := range writers {
		n := len(w.Acks())
		t.Logf("%s through %s: %d writes acknowledged; retries %v", w.initiator, c.gws[i].name, n, w.Retries())
	}
	if moves > 3 {
		t.Errorf("ownership moved %d times in 30 s under contention (at most 3): %v", moves, history)
	}
	for i, w := range writers {
		if len(w.Acks()) == 0 {
			t.Errorf("%s through %s: no write acknowledged; the non-owner must forward to the owner", w.initiator, c.gws[i].name)
		}
	}
	final, _, err := c.waitOwner(0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range writers {
		checked, err := w.verify(final)
		if err != nil {
			t.Errorf("%s: %v", w.initiator, err)
		}
		t.Logf("%s: %d writes read back through %s", w.initiator, checked, final.name)
	}
}

// TestMultiGatewayConfigWhileDown: with a 3-member etcd, a LUN added while
// gw-b is down is served by gw-a within a second of the import and by
// gw-b when it comes back; then losing the etcd leader does not stop a
// writer.
func TestMultiGatewayConfigWhileDown(t *testing.T) {
	c, _ := startOwned(t, 3, 1)
	gwa, gwb := c.gws[0], c.gws[1]
	if err := gwb.d.Stop(stopGrace); err != nil {
		t.Fatal(err)
	}
	imported, err := c.importConfig(2)
	if err != nil {
		t.Fatal(err)
	}
	// A session sees the LUNs of its login: log in afresh until LUN 1 is
	// there.
	hasLUN1 := func(g *mgGateway) (bool, error) {
		s, err := c.dial(g, initiator3, 0)
		if err != nil {
			return false, err
		}
		defer s.Close()
		luns, err := s.ReportLUNs()
		return slices.Contains(luns, 1), err
	}
	for {
		ok, err := hasLUN1(gwa)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Since(imported) > 10*time.Second {
			t.Fatalf("%s does not report LUN 1 10 s after the import", gwa.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(imported)
	t.Logf("%s reports LUN 1 %v after the import committed (gw-b down)", gwa.name, took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("%s took %v to serve the new LUN (want within 1 s)", gwa.name, took)
	}
	if _, _, err := c.waitOwner(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	w1 := c.newWriter(initiator2, 1, 0x21, 0, 64)
	w1.use(gwa)
	if err := w1.writeNext(context.Background()); err != nil {
		t.Fatalf("writing LUN 1 through %s: %v", gwa.name, err)
	}
	w1.Close()

	if err := c.start(gwb); err != nil {
		t.Fatal(err)
	}
	if ok, err := hasLUN1(gwb); err != nil || !ok {
		t.Fatalf("%s after its restart: LUN 1 listed %v (%v)", gwb.name, ok, err)
	}
	owner1, v, err := c.waitOwner(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LUN 1 through both gateways: %v", v)
	if checked, err := w1.verify(c.other(owner1)); err != nil || checked != 1 {
		t.Errorf("LUN 1's write read back through the non-owner (%d checked): %v", checked, err)
	}

	// A writer on LUN 0 while the etcd leader dies.
	owner, _, err := c.waitOwner(0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w := c.newWriter(initiator1, 0, 0x22, 0, mgDiskSize/mpBytes)
	w.use(owner)
	stop := runWriter(w)
	time.Sleep(time.Second)
	leader := c.etcd.Leader()
	if leader < 0 {
		stop()
		t.Fatal("no etcd member says it leads")
	}
	killed := time.Now()
	c.etcd.Kill(leader)
	before := len(w.Acks())
	time.Sleep(4 * time.Second)
	if err := stop(); err != nil {
		t.Fatalf("writer after etcd member %d died: %v", leader, err)
	}
	acks := w.Acks()
	var gap, slowest time.Duration
	for i, a := range acks {
		slowest = max(slowest, a.took)
		if i > 0 {
			gap = max(gap, a.at.Sub(acks[i-1].at))
		}
	}
	var after int
	for _, a := range acks {
		if a.at.After(killed.Add(3 * time.Second)) {
			after++
		}
	}
	t.Logf("killed etcd leader (member %d): %d writes before, %d after, %d in the last second; longest pause between acknowledgements %v, slowest write %v; retries %v",
		leader, before, len(acks)-before, after, gap.Round(time.Millisecond), slowest.Round(time.Millisecond), w.Retries())
	if after == 0 {
		t.Errorf("no write acknowledged 3-4 s after the etcd leader died")
	}
	if gap > 2*time.Second {
		t.Errorf("writes stalled %v while etcd elected a new leader", gap)
	}
	final, _, err := c.waitOwner(0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.verify(final); err != nil {
		t.Error(err)
	}
}

// Persistent reservations (SPC-4 6.15, 6.16).
const (
	prRegister     = 0x00
	prReserve      = 0x01
	prPreempt      = 0x04
	prReadKeys     = 0x00
	prReadReserv   = 0x01
	prWriteExcl    = 0x01
	statusConflict = 0x18
)

// prOut sends PERSISTENT RESERVE OUT with the basic parameter list.
func prOut(s *rawSession, action, typ byte, key, saKey uint64) (scsiResult, error) {
	param := make([]byte, 24)
	binary.BigEndian.PutUint64(param, key)
	binary.BigEndian.PutUint64(param[8:], saKey)
	cdb := []byte{0x5f, action, typ, 0, 0, 0, 0, 0, 24, 0}
	return s.doUA(cdb, param, 0)
}

// prIn returns PERSISTENT RESERVE IN data (READ KEYS, READ RESERVATION).
func prIn(s *rawSession, action byte) ([]byte, error) {
	data, err := s.dataIn(fmt.Sprintf("PERSISTENT RESERVE IN %d", action), []byte{0x5e, action, 0, 0, 0, 0, 0, 0x01, 0x00, 0}, 256)
	if err != nil {
		return nil, err
	}
	return data[:min(8+int(binary.BigEndian.Uint32(data[4:])), len(data))], nil
}

// prState is READ KEYS and READ RESERVATION through one session.
func prState(s *rawSession) (string, error) {
	keys, err := prIn(s, prReadKeys)
	if err != nil {
		return "", err
	}
	res, err := prIn(s, prReadReserv)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("keys % x; reservation % x", keys, res), nil
}

// retryMoving sends a command again while the LU moves (NOT READY 04/xx,
// and the unit attentions of the move) for up to 20 s.
func retryMoving(f func() (scsiResult, error)) (scsiResult, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := f()
		if err != nil || !(isNotReady(r) || isUA(r)) || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMultiGatewayPersistentReservations: a reservation taken through the
// owner reads the same through both paths, survives the owner's death
// (it lives in etcd), is enforced by the survivor and can be preempted
// there.
func TestMultiGatewayPersistentReservations(t *testing.T) {
	c, owner := startOwned(t, 1, 1)
	survivor := c.other(owner)
	const key1, key2 = 0x1111111111111111, 0x2222222222222222
	s1, err := c.dial(owner, initiator1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	for _, step := range []struct {
		name      string
		action    byte
		typ       byte
		key, sKey uint64
	}{{"REGISTER", prRegister, 0, 0, key1}, {"RESERVE", prReserve, prWriteExcl, key1, 0}} {
		if r, err := prOut(s1, step.action, step.typ, step.key, step.sKey); err != nil || r.Status != 0 {
			t.Fatalf("initiator 1 %s through the owner %s: %v %v", step.name, owner.name, r, err)
		}
	}
	state := func(g *mgGateway) string {
		s, err := c.dial(g, initiator3, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := prState(s)
		if err != nil {
			t.Fatalf("through %s: %v", g.name, err)
		}
		return st
	}
	want := state(owner)
	if !strings.Contains(want, "11 11 11 11 11 11 11 11 00 00 00 00 00 01") {
		t.Fatalf("through the owner %s: %s; want key1 holding Write Exclusive", owner.name, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got := state(survivor); got != want; got = state(survivor) {
		if time.Now().After(deadline) {
			t.Fatalf("PR IN differs: through %s %s, through %s %s", owner.name, want, survivor.name, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("PR IN through both paths: %s", want)

	c.kill(owner)
	killed := time.Now()
	if got := state(survivor); got != want {
		t.Errorf("after %s died, PR IN through %s: %s, want %s", owner.name, survivor.name, got, want)
	}
	s2, err := c.dial(survivor, initiator2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	data := mpPattern(0x62, 1, 0)
	r, err := retryMoving(func() (scsiResult, error) { return s2.Write10(0, data) })
	if err != nil || r.Status != statusConflict {
		t.Fatalf("unregistered initiator 2's WRITE through %s: %v %v; want RESERVATION CONFLICT", survivor.name, r, err)
	}
	t.Logf("%s enforces the reservation %v after %s's death", survivor.name, time.Since(killed).Round(time.Millisecond), owner.name)
	if r, err := prOut(s2, prRegister, 0, 0, key2); err != nil || r.Status != 0 {
		t.Fatalf("initiator 2 REGISTER through %s: %v %v", survivor.name, r, err)
	}
	if r, err := prOut(s2, prPreempt, prWriteExcl, key2, key1); err != nil || r.Status != 0 {
		t.Fatalf("initiator 2 PREEMPT of key1 through %s: %v %v", survivor.name, r, err)
	}
	if r, err := s2.Write10(0, data); err != nil || r.Status != 0 {
		t.Fatalf("initiator 2's WRITE after the preemption: %v %v", r, err)
	}
	got := state(survivor)
	t.Logf("after the preemption: %s", got)
	if strings.Contains(got, "11 11 11 11") || !strings.Contains(got, "22 22 22 22 22 22 22 22 00 00 00 00 00 01") {
		t.Errorf("after the preemption PR IN shows %s; want only key2, holding Write Exclusive", got)
	}
}

// TestMultiGatewayMultipathIO runs libiscsi's MultipathIO suite with one
// path through each gateway. Simple and CompareAndWrite switch the path on
// every command and do not retry NOT READY: they pass because the
// non-owner forwards each command to the owner over the peer link
// (Active/Non-optimized serves everything). Every test must pass.
func TestMultiGatewayMultipathIO(t *testing.T) {
	needTools(t, "iscsi-test-cu")
	c, owner := startOwned(t, 1, 1)
	var urls []string
	for _, g := range []*mgGateway{owner, c.other(owner)} {
		urls = append(urls, fmt.Sprintf("iscsi://%s/%s/0", g.portal, mgTarget))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started := time.Now()
	cmd := exec.CommandContext(ctx, "iscsi-test-cu", append([]string{"--dataloss", "-i", initiator1, "-I", initiator2,
		"-t", "ALL.MultipathIO"}, urls...)...)
	cmd.WaitDelay = 2 * time.Second
	b, err := cmd.CombinedOutput()
	out := string(b)
	results := cunitResults(out)
	t.Logf("iscsi-test-cu ALL.MultipathIO %v: %v, %v", urls, time.Since(started).Round(time.Millisecond), err)
	for _, name := range slices.Sorted(maps.Keys(results)) {
		t.Logf("  %s: %s", name, results[name])
	}
	if ctx.Err() != nil {
		t.Fatalf("iscsi-test-cu hung: no end within 2 minutes")
	}
	if !strings.Contains(out, "found matching LU device identifier for all (2) paths") {
		t.Errorf("libiscsi did not see one LU behind both paths")
	}
	if len(results) < 4 {
		t.Errorf("MultipathIO ran %d tests, want at least 4 (Simple, CompareAndWrite, CompareAndWriteAsync, Reset):\n%s", len(results), out)
	}
	for name, r := range results {
		if r != "passed" {
			t.Errorf("MultipathIO.%s did not pass across the gateways: %s", name, r)
		}
	}
	for _, g := range c.gws {
		if !g.running() {
			t.Fatalf("%s died during the suite", g.name)
		}
	}
	if _, v, err := c.waitOwner(0, 15*time.Second); err != nil {
		t.Errorf("after the suite: %v", err)
	} else {
		t.Logf("after the suite both gateways answer: %v", v)
	}
}

// cunitResults maps each test of a CUnit run to "passed" or its first
// failure.
func cunitResults(out string) map[string]string {
	res := map[string]string{}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), " ...")
		if !ok || !strings.HasPrefix(name, "Test: ") {
			continue
		}
		name, rest = strings.TrimPrefix(name, "Test: "), strings.TrimSpace(rest)
		if rest == "FAILED" && i+1 < len(lines) {
			rest = "FAILED: " + strings.TrimSpace(lines[i+1])
		}
		res[name] = rest
	}
	return res
}

// TestMultiGateway1000LUNs: with 1000 LUNs configured, one more LUN added
// to the configuration is served by every gateway within a second.
func TestMultiGateway1000LUNs(t *testing.T) {
	const n = 1000
	c := startMultiGateway(t, 1, n)
	// serves logs in afresh (a session sees the LUNs of its login).
	serves := func(g *mgGateway, lun int) (bool, error) {
		s, err := c.dial(g, initiator3, 0)
		if err != nil {
			return false, err
		}
		defer s.Close()
		luns, err := s.ReportLUNs()
		return slices.Contains(luns, lun), err
	}
	for _, g := range c.gws {
		if ok, err := serves(g, n-1); err != nil || !ok {
			t.Fatalf("%s does not serve LUN %d of %d: %v", g.name, n-1, n, err)
		}
	}
	imported, err := c.importConfig(n + 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range c.gws {
		for {
			ok, err := serves(g, n)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Since(imported) > 10*time.Second {
				t.Fatalf("%s does not serve LUN %d 10 s after the import", g.name, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(imported)
		t.Logf("%s serves LUN %d (one more than %d) %v after the import committed", g.name, n, n, took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("%s took %v to serve the new LUN (want under 1 s)", g.name, took)
		}
	}
}

// waitStopped waits until every thread of process pid is in the stopped
// state ('T' in /proc/<pid>/task/<tid>/stat).
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil {
			return err
		}
		running := 0
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // the thread ended
			}
			// The state follows the parenthesised command name.
			if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				running++
			}
		}
		if len(tasks) > 0 && running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d: %d of %d threads not stopped %v after SIGSTOP", pid, running, len(tasks), timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMultiGatewayAddGatewayLive: a third gateway added to the
// configuration while gw-a and gw-b serve is applied without restarting
// them: their LUs report three port groups, SendTargets lists the new
// portal, and once gw-c runs an initiator writes through it (forwarded to
// the owner) and reads the data back through the owner.
func TestMultiGatewayAddGatewayLive(t *testing.T) {
	c, owner := startOwned(t, 1, 1)
	pids := map[string]int{}
	for _, g := range c.gws {
		pids[g.name] = g.d.PID()
	}
	port, err := freePortOn("127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	gc := &mgGateway{name: "gw-c", portal: fmt.Sprintf("127.0.0.3:%d", port),
		dataDir: filepath.Join(c.dir, "gw-c"), log: filepath.Join(c.dir, "gw-c.log")}
	if err := os.MkdirAll(gc.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.gws = append(c.gws, gc)
	committed, err := c.importConfig(1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.dial(owner, initiator3, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for {
		st, err := s.RTPG()
		if err == nil && len(st) == 3 {
			t.Logf("%s reports 3 port groups %v after the import committed: %v", owner.name, time.Since(committed).Round(time.Millisecond), st)
			break
		}
		if time.Since(committed) > 10*time.Second {
			t.Fatalf("%s still reports %v (%v) 10 s after gw-c was added", owner.name, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := run(20*time.Second, "iscsi-ls", "-i", initiator1, "iscsi://"+owner.portal)
	if err != nil {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	if !strings.Contains(out, gc.portal) {
		t.Errorf("SendTargets through %s does not list the new gateway's portal %s:\n%s", owner.name, gc.portal, out)
	}

	if err := c.start(gc); err != nil {
		t.Fatal(err)
	}
	id, err := c.identity(gc, 0)
	if err != nil {
		t.Fatal(err)
	}
	gc.tpg = id.tpg
	final, v, err := c.waitOwner(0, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with gw-c running: %v", v)
	w, err := c.dial(gc, initiator1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const lba = 2048
	data := mpPattern(0xcc, 1, lba)
	r, err := retryMoving(func() (scsiResult, error) { return w.Write10(lba, data) })
	if err != nil || r.Status != 0 {
		t.Fatalf("write through gw-c: %v %v", r, err)
	}
	back, err := c.dial(final, initiator2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	got, err := back.Read10(lba, mpBlocks)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back through %s: equal %v, %v", final.name, bytes.Equal(got, data), err)
	}
	for _, g := range c.gws[:2] {
		if !g.running() || g.d.PID() != pids[g.name] {
			t.Errorf("%s restarted or stopped while the gateway was added", g.name)
		}
	}
}

// TestMultiGatewayFailback: the disk is given the gateway that does not
// own it as its preferred gateway, with failback "preferred", while both
// run (applied live): RTPG marks that group preferred on every path and
// the LU moves there once it has been up for the failback delay (30 s);
// after it dies the LU fails over to the other gateway, and once it is
// back and up for the delay again the LU returns to it, gracefully.
func TestMultiGatewayFailback(t *testing.T) {
	c, first := startOwned(t, 1, 1)
	// The preference goes to the gateway that does not own the LU, so it
	// has to move there.
	gwa, gwb := c.other(first), first
	t.Logf("owner before the preference: %s; preferring %s", first.name, gwa.name)
	c.diskMod = func(d *mgConfigDisk) { d.PreferredGateway, d.Failback = gwa.name, "preferred" }
	if _, err := c.importConfig(1); err != nil {
		t.Fatal(err)
	}
	waitOwnerIs := func(want *mgGateway, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			owner, v, err := c.waitOwner(0, within)
			if err == nil && owner == want {
				for name, groups := range v {
					for _, g := range groups {
						if g.Pref != (g.ID == gwa.tpg) {
							t.Errorf("via %s: group %d preferred %v; want only %s's (%d) preferred", name, g.ID, g.Pref, gwa.name, gwa.tpg)
						}
					}
				}
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("%s does not own the LU %v after %v: %v %v", want.name, within, time.Since(start), v, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	took := waitOwnerIs(gwa, 70*time.Second)
	t.Logf("%s (preferred) owns the LU %v after the preference was set", gwa.name, took.Round(time.Millisecond))
	c.kill(gwa)
	took = waitOwnerIs(gwb, 15*time.Second)
	t.Logf("%s killed; %s owns the LU %v later", gwa.name, gwb.name, took.Round(time.Millisecond))
	if err := c.start(gwa); err != nil {
		t.Fatal(err)
	}
	took = waitOwnerIs(gwa, 60*time.Second)
	t.Logf("%s restarted; the LU failed back to it %v later", gwa.name, took.Round(time.Millisecond))
}
