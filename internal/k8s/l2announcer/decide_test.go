package l2announcer

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/layer2"
)

func TestDecide(t *testing.T) {
	ip := netip.MustParseAddr
	host := []layer2.Interface{
		{Name: "eth0", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.11/24"), netip.MustParsePrefix("2001:db8:100::11/64")}},
		{Name: "eth1", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.11/24")}},
	}
	plan := []election.L2Announcement{
		// Mine, new to the cluster: probed.
		{Address: ip("198.51.100.200"), Key: ip("198.51.100.200"), Node: "n1", Owner: "n1", Services: []string{"default/new"}},
		// Mine, a dual-stack group elected under its IPv4 key, taken
		// over from another node (its owner, which is gone): not probed.
		{Address: ip("198.51.100.201"), Key: ip("198.51.100.201"), Node: "n1", Owner: "n2", Services: []string{"default/dual"}},
		{Address: ip("2001:db8:100::201"), Key: ip("198.51.100.201"), Node: "n1", Owner: "n2", Services: []string{"default/dual"}},
		// Shared by two Services, one of them announced elsewhere before:
		// not probed.
		{Address: ip("198.51.100.202"), Key: ip("198.51.100.202"), Node: "n1", Owner: "n1", Services: []string{"a/one", "b/two"}},
		// Mine, and my name in its status: this speaker announced it
		// before its restart; not new, not probed.
		{Address: ip("198.51.100.204"), Key: ip("198.51.100.204"), Node: "n1", Owner: "n1", Services: []string{"default/back"}},
		// On the interface the advertisement names.
		{Address: ip("192.0.2.7"), Key: ip("192.0.2.7"), Node: "n1", Owner: "n1", Interfaces: []string{"eth1"}, Services: []string{"default/named"}},
		// Named interface missing here: won, but not answered.
		{Address: ip("192.0.2.8"), Key: ip("192.0.2.8"), Node: "n1", Owner: "n1", Interfaces: []string{"bond0"}, Services: []string{"default/nowhere"}},
		// Another node's.
		{Address: ip("198.51.100.203"), Key: ip("198.51.100.203"), Node: "n2", Services: []string{"default/theirs"}},
	}
	lastAnnouncers := map[string]string{"default/dual": "n2", "b/two": "n4", "default/theirs": "n2", "default/back": "n1"}
	got := decide(plan, "n1", host, lastAnnouncers, takeOverProbes{}, 0)
	want := nodePart{
		want: map[netip.Addr][]string{
			ip("198.51.100.200"): {"eth0"}, ip("198.51.100.201"): {"eth0"}, ip("2001:db8:100::201"): {"eth0"},
			ip("198.51.100.202"): {"eth0"}, ip("198.51.100.204"): {"eth0"}, ip("192.0.2.7"): {"eth1"},
		},
		services: map[string]netip.Addr{
			"default/new": ip("198.51.100.200"), "default/dual": ip("2001:db8:100::201"),
			"a/one": ip("198.51.100.202"), "b/two": ip("198.51.100.202"), "default/back": ip("198.51.100.204"),
			"default/named": ip("192.0.2.7"),
		},
		servicesOf: map[netip.Addr][]string{
			ip("198.51.100.200"): {"default/new"}, ip("198.51.100.201"): {"default/dual"}, ip("2001:db8:100::201"): {"default/dual"},
			ip("198.51.100.202"): {"a/one", "b/two"}, ip("198.51.100.204"): {"default/back"}, ip("192.0.2.7"): {"default/named"},
		},
		probe: map[netip.Addr]bool{
			ip("198.51.100.200"): true, ip("198.51.100.201"): false, ip("2001:db8:100::201"): false,
			ip("198.51.100.202"): false, ip("198.51.100.204"): false, ip("192.0.2.7"): true,
		},
		keys: map[netip.Addr]netip.Addr{ip("2001:db8:100::201"): ip("198.51.100.201")},
		// Only the owners that are not this node.
		owners:      map[netip.Addr]string{ip("198.51.100.201"): "n2", ip("2001:db8:100::201"): "n2"},
		noInterface: []election.L2Announcement{plan[6]},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(nodePart{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("decide (-want +got):\n%s", diff)
	}
	if got := decide(plan, "n3", host, lastAnnouncers, takeOverProbes{}, 0); len(got.want) != 0 || got.keys != nil {
		t.Errorf("a node that won nothing answers %v", got.want)
	}

	// Which take-overs are probed.
	addrCmp := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	for _, tc := range []struct {
		name   string
		probes takeOverProbes
		want   map[netip.Addr]bool
	}{
		{"a suspect view probes every take-over", takeOverProbes{all: true}, map[netip.Addr]bool{
			ip("198.51.100.200"): true, ip("198.51.100.201"): true, ip("2001:db8:100::201"): true,
			ip("198.51.100.202"): true, ip("198.51.100.204"): true, ip("192.0.2.7"): true,
		}},
		{"the owner may still answer", takeOverProbes{from: map[string]bool{"n2": true}}, map[netip.Addr]bool{
			ip("198.51.100.200"): true, ip("198.51.100.201"): true, ip("2001:db8:100::201"): true,
			ip("198.51.100.202"): false, ip("198.51.100.204"): false, ip("192.0.2.7"): true,
		}},
		{"the last announcer may still answer", takeOverProbes{from: map[string]bool{"n4": true}}, map[netip.Addr]bool{
			ip("198.51.100.200"): true, ip("198.51.100.201"): false, ip("2001:db8:100::201"): false,
			ip("198.51.100.202"): true, ip("198.51.100.204"): false, ip("192.0.2.7"): true,
		}},
		{"this node is never among those that may answer", takeOverProbes{from: map[string]bool{"n1": true}}, want.probe},
		{"another lost node may answer: nothing of this node's is its", takeOverProbes{from: map[string]bool{"n3": true}}, want.probe},
	} {
		got := decide(plan, "n1", host, lastAnnouncers, tc.probes, 0)
		if diff := cmp.Diff(tc.want, got.probe, addrCmp); diff != "" {
			t.Errorf("%s: probe (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestAnyRejoined(t *testing.T) {
	for _, tc := range []struct {
		name      string
		prev, now map[string]bool
		want      bool
	}{
		{"first plan", nil, map[string]bool{"a": true}, false},
		{"same", map[string]bool{"a": true, "b": true}, map[string]bool{"a": true, "b": true}, false},
		{"one gone", map[string]bool{"a": true, "b": true}, map[string]bool{"a": true}, false},
		{"one back", map[string]bool{"a": true}, map[string]bool{"a": true, "b": true}, true},
		{"listed but not ready before", map[string]bool{"a": true, "b": false}, map[string]bool{"a": true, "b": true}, true},
	} {
		if got := anyRejoined(tc.prev, tc.now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
