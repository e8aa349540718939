package l2announcer

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/barelb/barelb/internal/layer2"
)

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	mac, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func TestSpeakerMeta(t *testing.T) {
	eth0, eth1 := mustMAC(t, "02:00:00:00:00:01"), mustMAC(t, "02:00:00:00:00:02")
	ifaces := []layer2.Interface{
		{Name: "lo", Loopback: true, HardwareAddr: net.HardwareAddr{0, 0, 0, 0, 0, 0}},
		{Name: "eth0", HardwareAddr: eth0},
		{Name: "br0", HardwareAddr: eth0}, // a bridge with eth0's address
		{Name: "ib0", HardwareAddr: make(net.HardwareAddr, 20)},
		{Name: "wg0"}, // no hardware address
		{Name: "eth1", HardwareAddr: eth1},
	}
	tests := []struct {
		name    string
		max     int
		has     []net.HardwareAddr
		hasNot  []net.HardwareAddr
		wantLen int
	}{
		{name: "room for all", max: 512, has: []net.HardwareAddr{eth0, eth1}, wantLen: 14},
		{name: "room for one", max: 10, has: []net.HardwareAddr{eth0}, hasNot: []net.HardwareAddr{eth1}, wantLen: 8},
		{name: "no room", max: 0, hasNot: []net.HardwareAddr{eth0, eth1}, wantLen: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			meta := SpeakerMeta(ifaces, tt.max, true)
			if len(meta) != tt.wantLen {
				t.Errorf("meta is %d bytes, want %d", len(meta), tt.wantLen)
			}
			metas := map[string][]byte{"n1": meta}
			for _, mac := range tt.has {
				if node, ok := SpeakerOf(metas, mac); !ok || node != "n1" {
					t.Errorf("SpeakerOf(%s) = %q, %v; want n1", mac, node, ok)
				}
			}
			for _, mac := range tt.hasNot {
				if node, ok := SpeakerOf(metas, mac); ok {
					t.Errorf("SpeakerOf(%s) = %q, want none", mac, node)
				}
			}
		})
	}
}

func TestSpeakerOf(t *testing.T) {
	a, b, foreign := mustMAC(t, "02:00:00:00:00:0a"), mustMAC(t, "02:00:00:00:00:0b"), mustMAC(t, "02:00:00:00:00:ff")
	metas := map[string][]byte{
		"node-a":  SpeakerMeta([]layer2.Interface{{Name: "eth0", HardwareAddr: a}}, 512, true),
		"node-b":  SpeakerMeta([]layer2.Interface{{Name: "eth0", HardwareAddr: b}}, 512, false),
		"garbled": {9, 2, 0, 0, 0, 0, 0xff}, // an unknown version holds no address
		"short":   {speakerMetaVersion, 2, 0, 0},
	}
	tests := []struct {
		mac      net.HardwareAddr
		wantNode string
		wantOK   bool
	}{
		{a, "node-a", true},
		{b, "node-b", true},
		{foreign, "", false},
		{nil, "", false},
		{net.HardwareAddr{2, 0, 0}, "", false},
	}
	for _, tt := range tests {
		if node, ok := SpeakerOf(metas, tt.mac); node != tt.wantNode || ok != tt.wantOK {
			t.Errorf("SpeakerOf(%s) = %q, %v; want %q, %v", tt.mac, node, ok, tt.wantNode, tt.wantOK)
		}
	}
}

// TestSpeakerReady: a speaker's metadata says whether it may be elected;
// an earlier speaker's (version 1) and none at all count as ready, and
// both versions carry the MACs.
func TestSpeakerReady(t *testing.T) {
	mac := mustMAC(t, "02:00:00:00:00:01")
	ifaces := []layer2.Interface{{Name: "eth0", HardwareAddr: mac}}
	v1 := append([]byte{speakerMetaV1}, mac...)
	for _, tc := range []struct {
		name  string
		meta  []byte
		ready bool
	}{
		{"ready", SpeakerMeta(ifaces, 512, true), true},
		{"not ready yet", SpeakerMeta(ifaces, 512, false), false},
		{"an earlier speaker's", v1, true},
		{"none", nil, true},
	} {
		if got := SpeakerReady(tc.meta); got != tc.ready {
			t.Errorf("%s: ready %v, want %v", tc.name, got, tc.ready)
		}
		if tc.meta != nil {
			if node, ok := SpeakerOf(map[string][]byte{"n1": tc.meta}, mac); !ok || node != "n1" {
				t.Errorf("%s: SpeakerOf = %q, %v; want n1", tc.name, node, ok)
			}
		}
	}
}

// TestSpeakerMetaSubnets: the metadata carries the subnets of the
// interfaces that may answer (not loopback, link-local or pod
// interfaces), the MACs still read as before, and metadata without
// subnets (earlier speakers, or too little room) says it does not know.
func TestSpeakerMetaSubnets(t *testing.T) {
	eth0, eth1 := mustMAC(t, "02:00:00:00:00:01"), mustMAC(t, "02:00:00:00:00:02")
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range s {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	ifaces := []layer2.Interface{
		{Name: "lo", Up: true, Loopback: true, Prefixes: pfx("127.0.0.1/8", "::1/128")},
		{Name: "eth0", Up: true, HardwareAddr: eth0, Prefixes: pfx("198.51.100.11/24", "2001:db8:100::11/64", "fe80::1/64")},
		{Name: "eth1", Up: true, HardwareAddr: eth1, Prefixes: pfx("203.0.113.140/26")},
		{Name: "cni0", Up: true, HardwareAddr: eth1, Prefixes: pfx("198.18.1.1/24")},
		{Name: "eth2", Up: false, Prefixes: pfx("192.0.2.5/24")},
	}
	meta := SpeakerMeta(ifaces, 512, true)
	got, ok := MetaSubnets(meta)
	if !ok {
		t.Fatalf("no subnets in %x", meta)
	}
	if diff := cmp.Diff(pfx("198.51.100.0/24", "2001:db8:100::/64", "203.0.113.128/26"), got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("subnets (-want +got):\n%s", diff)
	}
	for _, mac := range []net.HardwareAddr{eth0, eth1} {
		if node, ok := SpeakerOf(map[string][]byte{"n1": meta}, mac); !ok || node != "n1" {
			t.Errorf("SpeakerOf(%s) = %q, %v; want n1", mac, node, ok)
		}
	}
	if !SpeakerReady(meta) {
		t.Error("not ready")
	}
	for name, m := range map[string][]byte{
		"version 1":          {speakerMetaV1, 2, 0, 0, 0, 0, 1},
		"version 2, no flag": SpeakerMeta([]layer2.Interface{{Name: "eth0", HardwareAddr: eth0}}, 512, true),
		"no room":            SpeakerMeta(ifaces, 20, true),
		"garbage":            {speakerMetaVersion, metaSubnets, 9, 9, 200},
		"bad length":         {speakerMetaVersion, metaSubnets, 4, 24, 1, 2, 3, 5},
	} {
		if s, ok := MetaSubnets(m); ok {
			t.Errorf("%s: subnets %v, want none", name, s)
		}
	}
}
