package l2announcer

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/barelb/barelb/internal/layer2"
)

// conflictCmp lets cmp.Diff compare the conflict bookkeeping's values.
var conflictCmp = cmp.Options{
	cmpopts.EquateComparable(netip.Addr{}),
	cmpopts.EquateEmpty(),
}

func wantOn(iface string, addrs ...netip.Addr) map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for _, a := range addrs {
		out[a] = []string{iface}
	}
	return out
}

func TestConflictInbox(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	macX, macY := mustMAC(t, "02:00:00:00:00:0a"), mustMAC(t, "02:00:00:00:00:0b")
	var inbox conflictInbox
	for _, r := range []layer2.Conflict{
		{Kind: layer2.ConflictProbed, Address: a, Interface: "eth0", MAC: macX},
		{Kind: layer2.ConflictProbed, Address: a, Interface: "eth0", MAC: macY},
		{Kind: layer2.ConflictProbed, Address: b, Interface: "eth0", MAC: macX},
		{Kind: layer2.ConflictSeen, Address: c, Interface: "eth1", MAC: macX},
		{Kind: layer2.ConflictResolved, Address: c, Interface: "eth1"},
		{Kind: layer2.ConflictSeen, Address: a, Interface: "eth1", MAC: macY},
	} {
		inbox.add(r)
	}
	type taken struct {
		Probed map[netip.Addr]layer2.Conflict
		Seen   []layer2.Conflict
	}
	lastA := layer2.Conflict{Kind: layer2.ConflictProbed, Address: a, Interface: "eth0", MAC: macY}
	for i, step := range []struct {
		want map[netip.Addr][]string
		got  taken
	}{
		// The last probed conflict of each wanted address; every claim
		// seen, in order (the book decides which are wanted).
		{wantOn("eth0", a, c), taken{
			Probed: map[netip.Addr]layer2.Conflict{a: lastA},
			Seen: []layer2.Conflict{
				{Kind: layer2.ConflictSeen, Address: c, Interface: "eth1", MAC: macX},
				{Kind: layer2.ConflictSeen, Address: a, Interface: "eth1", MAC: macY},
			},
		}},
		// Probed conflicts stay; claims are handed over once. b's was
		// forgotten when b was not wanted.
		{wantOn("eth0", a, b), taken{Probed: map[netip.Addr]layer2.Conflict{a: lastA}}},
		{wantOn("eth0", b), taken{}},
		{wantOn("eth0", a, b), taken{}},
	} {
		var got taken
		got.Probed, got.Seen = inbox.take(step.want)
		if diff := cmp.Diff(step.got, got, conflictCmp); diff != "" {
			t.Errorf("take %d (-want +got):\n%s", i+1, diff)
		}
	}
}

// TestConflictInboxConcurrent has responders report while plans read
// (run with -race).
func TestConflictInboxConcurrent(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	mac := mustMAC(t, "02:00:00:00:00:0a")
	var inbox conflictInbox
	var wg sync.WaitGroup
	const reports = 100
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range reports {
				inbox.add(layer2.Conflict{Kind: layer2.ConflictSeen, Address: a, MAC: mac})
				inbox.add(layer2.Conflict{Kind: layer2.ConflictProbed, Address: a, MAC: mac})
			}
		}()
	}
	seen := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		_, s := inbox.take(wantOn("eth0", a))
		seen += len(s)
	}
	if seen != 4*reports {
		t.Errorf("%d claims handed over, want %d", seen, 4*reports)
	}
}
