package bgpadvertiser

import (
	"net/netip"
	"testing"
)

func TestNextHopsOn(t *testing.T) {
	a := netip.MustParseAddr
	// A node like the lab's: a LAN link (the InternalIPs) and a link to
	// the router's segment.
	ifaces := [][]netip.Addr{
		{a("127.0.0.1"), a("::1")},
		{a("198.51.100.11"), a("fe80::1"), a("2001:db8:100::11")},
		{a("203.0.113.11"), a("fe80::2"), a("2001:db8:200::11")},
		{a("203.0.113.99")},
	}
	for _, tc := range []struct {
		name   string
		local  netip.Addr
		v4, v6 netip.Addr
	}{
		{"IPv4 session on the router's link", a("203.0.113.11"), a("203.0.113.11"), a("2001:db8:200::11")},
		{"IPv6 session on the router's link", a("2001:db8:200::11"), a("203.0.113.11"), a("2001:db8:200::11")},
		{"session on the LAN", a("198.51.100.11"), a("198.51.100.11"), a("2001:db8:100::11")},
		{"link-local addresses are never next hops", a("fe80::2"), a("203.0.113.11"), a("2001:db8:200::11")},
		{"a link without IPv6", a("203.0.113.99"), a("203.0.113.99"), netip.Addr{}},
		{"an address of no interface", a("192.0.2.1"), netip.Addr{}, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v4, v6 := nextHopsOn(ifaces, tc.local)
			if v4 != tc.v4 || v6 != tc.v6 {
				t.Errorf("nextHopsOn(%s) = %s, %s; want %s, %s", tc.local, v4, v6, tc.v4, tc.v6)
			}
		})
	}
}
