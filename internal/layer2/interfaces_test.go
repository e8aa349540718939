package layer2

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSelectInterfaces(t *testing.T) {
	lan := netip.MustParsePrefix("198.51.100.11/24")
	lan6 := netip.MustParsePrefix("2001:db8:100::11/64")
	other := netip.MustParsePrefix("203.0.113.11/26")
	host := []Interface{
		{Name: "lo", Up: true, Loopback: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Name: "eth0", Up: true, Prefixes: []netip.Prefix{lan, lan6}},
		{Name: "eth1", Up: true, Prefixes: []netip.Prefix{other}},
		{Name: "eth2", Up: false, Prefixes: []netip.Prefix{lan}},
		{Name: "bond0", Up: true},
		{Name: "ens1f0", Up: true, Enslaved: true},
		{Name: "kube-ipvs0", Up: true, NoARP: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.200/32")}},
		{Name: "cali12345", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
		{Name: "veth9f2", Up: true},
		{Name: "tun0", Up: true, PointToPoint: true},
		{Name: "arpless", Up: true, NoARP: true, Prefixes: []netip.Prefix{lan}},
	}
	tests := []struct {
		name  string
		vip   string
		named []string
		want  []string
	}{
		{"VIP in the LAN subnet: that interface only", "198.51.100.200", nil, []string{"eth0"}},
		{"IPv6 VIP in the LAN subnet", "2001:db8:100::200", nil, []string{"eth0"}},
		{"VIP in another interface's subnet", "203.0.113.20", nil, []string{"eth1"}},
		{"VIP in no subnet: every suitable interface", "198.18.0.1", nil, []string{"bond0", "eth0", "eth1"}},
		{"named interfaces win, as far as they can answer", "198.51.100.200", []string{"eth1", "lo", "missing", "veth9f2"}, []string{"eth1", "veth9f2"}},
		{"a named interface that is down is not used", "198.51.100.200", []string{"eth2"}, nil},
	}
	for _, tc := range tests {
		got := SelectInterfaces(netip.MustParseAddr(tc.vip), tc.named, host)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestHostInterfacesReadsLoopback(t *testing.T) {
	ifs, err := HostInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name == "lo" {
			if !i.Loopback || i.Answerable() {
				t.Errorf("lo read as %+v", i)
			}
			return
		}
	}
	t.Error("no lo interface found")
}
