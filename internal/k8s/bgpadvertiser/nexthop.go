package bgpadvertiser

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/barelb/barelb/internal/bgp"
)

// linkNextHops sets, for every session, the next hops of the routes of the
// other family than the session's (an IPv6 VIP over an IPv4 session) to
// this node's addresses on the link the session runs over, when it can
// find them: the node's InternalIPs, decide's default, may sit on another
// network than the one the router peers on, and a next hop the router
// cannot reach makes it drop the route. It reads the kernel (source
// address selection and the interfaces' addresses); a session whose link
// it cannot tell keeps the default.
func linkNextHops(peers []bgp.Peer) {
	ifaces, err := interfaceAddrs()
	if err != nil {
		return
	}
	for i := range peers {
		p := &peers[i]
		local := p.SourceAddress
		if !local.IsValid() {
			if local, err = kernelSource(p.Address); err != nil {
				continue
			}
		}
		v4, v6 := nextHopsOn(ifaces, local)
		if v4.IsValid() {
			p.NextHopV4 = v4
		}
		if v6.IsValid() {
			p.NextHopV6 = v6
		}
	}
}

// nextHopsOn returns the first global unicast address of each family of
// the interface (its addresses, as listed) holding local; none when no
// interface holds it.
func nextHopsOn(ifaces [][]netip.Addr, local netip.Addr) (v4, v6 netip.Addr) {
	for _, addrs := range ifaces {
		holds := false
		for _, a := range addrs {
			holds = holds || a == local
		}
		if !holds {
			continue
		}
		for _, a := range addrs {
			if !a.IsGlobalUnicast() {
				continue
			}
			if a.Is4() && !v4.IsValid() {
				v4 = a
			}
			if a.Is6() && !v6.IsValid() {
				v6 = a
			}
		}
		return v4, v6
	}
	return netip.Addr{}, netip.Addr{}
}

// interfaceAddrs lists the addresses of every interface of the node.
func interfaceAddrs() ([][]netip.Addr, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out [][]netip.Addr
	for _, ifi := range ifis {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		var list []netip.Addr
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					list = append(list, ip.Unmap())
				}
			}
		}
		out = append(out, list)
	}
	return out, nil
}
