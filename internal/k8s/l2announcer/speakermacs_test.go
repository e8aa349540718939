package l2announcer

import (
	"net"
	"testing"

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
