package l2announcer

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/barelb/barelb/internal/layer2"
)

// conflictCmp lets cmp.Diff compare the conflict bookkeeping's values.
var conflictCmp = cmp.Options{
	cmp.AllowUnexported(conflictNews{}, conflictNote{}, conflictBook{}),
	cmpopts.EquateComparable(netip.Addr{}),
	cmpopts.EquateEmpty(),
}

func addrSet(addrs ...netip.Addr) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, a := range addrs {
		out[a] = true
	}
	return out
}

func wantOn(iface string, addrs ...netip.Addr) map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for _, a := range addrs {
		out[a] = []string{iface}
	}
	return out
}

func TestConflictBook(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::3")
	macX, macY := mustMAC(t, "02:00:00:00:00:0a"), mustMAC(t, "02:00:00:00:00:0b")
	probedBy := func(mac net.HardwareAddr, addrs ...netip.Addr) map[netip.Addr]layer2.Conflict {
		out := map[netip.Addr]layer2.Conflict{}
		for _, ip := range addrs {
			out[ip] = layer2.Conflict{Kind: layer2.ConflictProbed, Address: ip, Interface: "eth0", MAC: mac}
		}
		return out
	}
	seenBy := func(mac net.HardwareAddr, ip netip.Addr) layer2.Conflict {
		return layer2.Conflict{Kind: layer2.ConflictSeen, Address: ip, Interface: "eth1", MAC: mac}
	}
	inUse := func(ip netip.Addr, mac net.HardwareAddr) conflictNote {
		return conflictNote{kind: noteInUse, address: ip, mac: mac, iface: "eth0"}
	}
	over := func(ip netip.Addr) conflictNote { return conflictNote{kind: noteOver, address: ip} }
	claimed := func(ip netip.Addr, mac net.HardwareAddr) conflictNote {
		return conflictNote{kind: noteClaimed, address: ip, mac: mac, iface: "eth1"}
	}
	// inConflictWith is a plan in which a probe found the wanted address
	// ip in use by mac: the responder answers it nowhere.
	inConflictWith := func(mac net.HardwareAddr, ip netip.Addr) conflictFacts {
		return conflictFacts{want: wantOn("eth0", ip), inConflict: addrSet(ip), notAnswered: addrSet(ip), probed: probedBy(mac, ip)}
	}
	answered := func(addrs ...netip.Addr) conflictFacts { return conflictFacts{want: wantOn("eth0", addrs...)} }
	withSeen := func(f conflictFacts, seen ...layer2.Conflict) conflictFacts {
		f.seen = seen
		return f
	}

	type plan struct {
		facts conflictFacts
		want  conflictNews
	}
	for _, tc := range []struct {
		name  string
		plans []plan
		// book, when set, is what the book must remember after the plans.
		book *conflictBook
	}{
		{
			name: "a new probed conflict is told once",
			plans: []plan{
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a), notes: []conflictNote{inUse(a, macX)}}},
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a)}},
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a)}},
			},
			book: &conflictBook{inUse: map[netip.Addr]string{a: macX.String()}},
		},
		{
			name: "another MAC is a new conflict",
			plans: []plan{
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a), notes: []conflictNote{inUse(a, macX)}}},
				{inConflictWith(macY, a), conflictNews{unanswered: addrSet(a), notes: []conflictNote{inUse(a, macY)}}},
				{inConflictWith(macY, a), conflictNews{unanswered: addrSet(a)}},
			},
		},
		{
			name: "a conflict over is told once, and a new one after it again",
			plans: []plan{
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a), notes: []conflictNote{inUse(a, macX)}}},
				// The responder answers it again; its last probed conflict
				// is still in the inbox.
				{conflictFacts{want: wantOn("eth0", a), probed: probedBy(macX, a)}, conflictNews{notes: []conflictNote{over(a)}}},
				{answered(a), conflictNews{}},
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a), notes: []conflictNote{inUse(a, macX)}}},
			},
		},
		{
			name: "a conflict on an address no longer wanted is forgotten without a word",
			plans: []plan{
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a), notes: []conflictNote{inUse(a, macX)}}},
				{answered(b), conflictNews{}},
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a), notes: []conflictNote{inUse(a, macX)}}},
				{answered(), conflictNews{}},
			},
			book: &conflictBook{},
		},
		{
			name: "in conflict before the probe's report: told when the report comes",
			plans: []plan{
				{conflictFacts{want: wantOn("eth0", a), inConflict: addrSet(a), notAnswered: addrSet(a)}, conflictNews{unanswered: addrSet(a)}},
				{inConflictWith(macX, a), conflictNews{unanswered: addrSet(a), notes: []conflictNote{inUse(a, macX)}}},
			},
		},
		{
			name: "a conflict never told is not over either",
			plans: []plan{
				{conflictFacts{want: wantOn("eth0", a), inConflict: addrSet(a), notAnswered: addrSet(a)}, conflictNews{unanswered: addrSet(a)}},
				{answered(a), conflictNews{}},
			},
		},
		{
			name: "claims are told once per MAC",
			plans: []plan{
				{withSeen(answered(a), seenBy(macX, a), seenBy(macX, a)), conflictNews{notes: []conflictNote{claimed(a, macX)}}},
				{withSeen(answered(a), seenBy(macX, a)), conflictNews{}},
				{withSeen(answered(a), seenBy(macY, a)), conflictNews{notes: []conflictNote{claimed(a, macY)}}},
				// Only the last MAC told is remembered.
				{withSeen(answered(a), seenBy(macX, a)), conflictNews{notes: []conflictNote{claimed(a, macX)}}},
				{answered(a), conflictNews{}},
			},
			book: &conflictBook{claimed: map[netip.Addr]string{a: macX.String()}},
		},
		{
			name: "a claim on an address not wanted is not told",
			plans: []plan{
				{withSeen(answered(a), seenBy(macX, b)), conflictNews{}},
			},
			book: &conflictBook{},
		},
		{
			name: "claims on an address no longer wanted are forgotten",
			plans: []plan{
				{withSeen(answered(a), seenBy(macX, a)), conflictNews{notes: []conflictNote{claimed(a, macX)}}},
				{answered(b), conflictNews{}},
				{withSeen(answered(a), seenBy(macX, a)), conflictNews{notes: []conflictNote{claimed(a, macX)}}},
			},
		},
		{
			name: "unanswered: in conflict on an interface, or answered on none",
			plans: []plan{
				{
					conflictFacts{
						want: map[netip.Addr][]string{a: {"eth0", "eth1"}, b: {"eth0"}, c: {"eth0"}},
						// a: in conflict on eth0, answered on eth1. b: its
						// probe runs. c: answered. The stray entries are
						// not wanted.
						inConflict:  addrSet(a, netip.MustParseAddr("198.51.100.9")),
						notAnswered: addrSet(b, netip.MustParseAddr("198.51.100.10")),
						probed:      probedBy(macX, a),
					},
					conflictNews{unanswered: addrSet(a, b), notes: []conflictNote{inUse(a, macX)}},
				},
			},
		},
		{
			name: "notes: new conflicts and conflicts over by address, then claims as seen",
			plans: []plan{
				{
					conflictFacts{want: wantOn("eth0", a, b, c), inConflict: addrSet(c, b, a), notAnswered: addrSet(a, b, c), probed: probedBy(macX, a, b, c)},
					conflictNews{unanswered: addrSet(a, b, c), notes: []conflictNote{inUse(a, macX), inUse(b, macX), inUse(c, macX)}},
				},
				{
					withSeen(conflictFacts{want: wantOn("eth0", a, b, c), probed: probedBy(macX, a, b, c)}, seenBy(macY, c), seenBy(macY, a)),
					conflictNews{notes: []conflictNote{over(a), over(b), over(c), claimed(c, macY), claimed(a, macY)}},
				},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var book conflictBook
			for i, p := range tc.plans {
				got := book.next(p.facts)
				if diff := cmp.Diff(p.want, got, conflictCmp); diff != "" {
					t.Errorf("plan %d (-want +got):\n%s", i+1, diff)
				}
			}
			if tc.book != nil {
				if diff := cmp.Diff(*tc.book, book, conflictCmp); diff != "" {
					t.Errorf("remembered (-want +got):\n%s", diff)
				}
			}
		})
	}
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
