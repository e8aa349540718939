package lab

import (
	"fmt"
	"net/netip"
	"strings"
)

// buildTopology creates the namespaces, bridges, links, addresses and
// routes of the plan. It adds nothing to the root namespace.
func (l *Lab) buildTopology() error {
	s := &l.state
	var add []string
	for _, ns := range s.Bridges {
		add = append(add, "netns add "+ns)
	}
	for _, h := range s.hosts() {
		add = append(add, "netns add "+h.Netns)
	}
	if err := ipBatch("", add); err != nil {
		return err
	}
	l.netnsCreated = true
	// Segment bridges, each in its own namespace, with one port per host.
	segCmds := map[string][]string{}
	for seg, ns := range s.Bridges {
		segCmds[seg] = []string{"link set lo up", "link add br0 type bridge", "link set br0 up"}
		_ = ns
	}
	hostCmds := map[string][]string{}
	for _, h := range s.hosts() {
		hostCmds[h.Netns] = append(hostCmds[h.Netns], "link set lo up")
		for _, ifc := range h.Interfaces {
			if ifc.Port != "" {
				segCmds[ifc.bridge()] = append(segCmds[ifc.bridge()], bridgePortCmds(h, ifc)...)
			}
			hostCmds[h.Netns] = append(hostCmds[h.Netns], hostLinkCmds(ifc)...)
		}
	}
	// The point-to-point link between the router and the host behind it.
	rext, eext := s.Router.Interfaces[1], s.Ext.Interfaces[0]
	hostCmds[s.Router.Netns] = append([]string{fmt.Sprintf("link add %s address %s type veth peer name %s address %s netns %s",
		rext.Name, rext.MAC, eext.Name, eext.MAC, s.Ext.Netns)}, hostCmds[s.Router.Netns]...)
	for seg, cmds := range segCmds {
		if err := ipBatch(s.Bridges[seg], cmds); err != nil {
			return err
		}
	}
	// The router first: it creates the ext link.
	if err := ipBatch(s.Router.Netns, hostCmds[s.Router.Netns]); err != nil {
		return err
	}
	delete(hostCmds, s.Router.Netns)
	// Routes: pod ranges between nodes over the LAN; the network behind the
	// router through the router; the ext host's default route.
	// With a second LAN, each LAN reaches the other through the
	// router's leg on it, pods included.
	secondLAN := s.Client2.Netns != ""
	if secondLAN {
		for _, h := range append([]Host{s.ControlPlane, s.Client, s.Client2}, s.Nodes...) {
			other4, other6 := LAN2v4, LAN2v6
			if h.onLAN2() {
				other4, other6 = LANv4, LANv6
			}
			hostCmds[h.Netns] = append(hostCmds[h.Netns],
				fmt.Sprintf("route add %s via %s", other4, s.routerOn(h, 4)),
				fmt.Sprintf("route add %s via %s", other6, s.routerOn(h, 6)))
		}
		for _, m := range s.Nodes {
			hostCmds[s.Router.Netns] = append(hostCmds[s.Router.Netns],
				fmt.Sprintf("route add %s via %s", m.PodCIDRs[0], m.Addr(SegmentLAN, 4)),
				fmt.Sprintf("route add %s via %s", m.PodCIDRs[1], m.Addr(SegmentLAN, 6)))
		}
	}
	for _, n := range s.Nodes {
		hostCmds[n.Netns] = append(hostCmds[n.Netns], s.nodeRoutes(n)...)
		hostCmds[n.Netns] = append(hostCmds[n.Netns],
			// The pods' bridge, with a MAC address of its own: a bridge
			// without one takes the lowest of its ports' and changes it
			// whenever a pod with a lower one starts. IPv6 pods keep the
			// old address for their gateway until neighbour discovery
			// finds out (tens of seconds: the bridge's solicitations come
			// from its link-local address, not the gateway's), and
			// replies to traffic kube-proxy sent them from another node
			// are lost meanwhile. IPv4 pods learn the new address from
			// the first ARP request of the bridge.
			"link add cni0 address "+podBridgeMAC(n)+" type bridge", "link set cni0 up",
			"addr add "+gateway(n.PodCIDRs[0])+"/24 dev cni0",
			"addr add "+gateway(n.PodCIDRs[1])+"/64 dev cni0 nodad")
	}
	if l.opts.Kubelets {
		// Programs on the hosts' own network (the API server calling a
		// webhook, a hostNetwork speaker calling the API server) connect
		// to cluster IPs, which kube-proxy translates only after the
		// kernel found a route: without one the connect fails at once
		// ("network is unreachable"). Real machines have a default route.
		for _, h := range append([]Host{s.ControlPlane}, s.Nodes...) {
			hostCmds[h.Netns] = append(hostCmds[h.Netns],
				"route add "+ServicesV4+" dev eth0", "route add "+ServicesV6+" dev eth0")
		}
		// The API server reaches webhooks' pods on every node (kube-proxy
		// in the control plane translates the Services).
		for _, m := range s.Nodes {
			hostCmds[s.ControlPlane.Netns] = append(hostCmds[s.ControlPlane.Netns],
				fmt.Sprintf("route add %s via %s", m.PodCIDRs[0], m.Addr(SegmentLAN, 4)),
				fmt.Sprintf("route add %s via %s", m.PodCIDRs[1], m.Addr(SegmentLAN, 6)))
		}
	}
	hostCmds[s.Ext.Netns] = append(hostCmds[s.Ext.Netns],
		"route add default via "+s.Router.Addr(SegmentExt, 4).String(),
		"route add ::/0 via "+s.Router.Addr(SegmentExt, 6).String())
	for ns, cmds := range hostCmds {
		if err := ipBatch(ns, cmds); err != nil {
			return err
		}
	}
	forward := map[string]string{"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
	for _, h := range append([]Host{s.Router}, s.Nodes...) {
		if err := setSysctls(h.Netns, forward); err != nil {
			return err
		}
	}
	// The router spreads flows over the nodes' equal-cost routes by ports
	// too (policy 0 hashes addresses only: one client, one node).
	return setSysctls(s.Router.Netns, map[string]string{
		"net.ipv4.fib_multipath_hash_policy": "1", "net.ipv6.fib_multipath_hash_policy": "1"})
}

// nodeRoutes are a node's routes: pod ranges of the other nodes over the
// LAN (through the router for a node on the other LAN), the network
// behind the router through the router. "replace" makes them safe to add
// again (RecreateLANLink); the other LAN's own route is buildTopology's.
func (s *State) nodeRoutes(n Host) []string {
	var out []string
	for _, m := range s.Nodes {
		if m.Name == n.Name {
			continue
		}
		via4, via6 := m.Addr(SegmentLAN, 4), m.Addr(SegmentLAN, 6)
		if m.onLAN2() != n.onLAN2() {
			via4, via6 = s.routerOn(n, 4), s.routerOn(n, 6)
		}
		out = append(out,
			fmt.Sprintf("route replace %s via %s", m.PodCIDRs[0], via4),
			fmt.Sprintf("route replace %s via %s", m.PodCIDRs[1], via6))
	}
	return append(out,
		fmt.Sprintf("route replace %s via %s", ExtSegv4, s.Router.Addr(SegmentRouter, 4)),
		fmt.Sprintf("route replace %s via %s", ExtSegv6, s.Router.Addr(SegmentRouter, 6)))
}

// routerOn is the router's address on h's LAN.
func (s *State) routerOn(h Host, family int) netip.Addr {
	for _, ifc := range s.Router.Interfaces {
		if ifc.Segment == SegmentLAN && (ifc.bridge() == SegmentLAN2) == h.onLAN2() {
			for _, a := range ifc.Addresses {
				if p := netip.MustParsePrefix(a); p.Addr().Is4() == (family == 4) {
					return p.Addr()
				}
			}
		}
	}
	return netip.Addr{}
}

// hostLinkCmds bring a host's interface up with its addresses.
func hostLinkCmds(ifc Interface) []string {
	out := []string{fmt.Sprintf("link set %s up", ifc.Name)}
	for _, a := range ifc.Addresses {
		extra := ""
		if strings.Contains(a, ":") {
			extra = " nodad"
		}
		out = append(out, fmt.Sprintf("addr add %s dev %s%s", a, ifc.Name, extra))
	}
	return out
}

// bridgePortCmds make a host's interface on its segment's bridge.
func bridgePortCmds(h Host, ifc Interface) []string {
	return []string{
		fmt.Sprintf("link add %s type veth peer name %s address %s netns %s", ifc.Port, ifc.Name, ifc.MAC, h.Netns),
		fmt.Sprintf("link set %s master br0 up", ifc.Port),
	}
}

// RecreateLANLink deletes a node's LAN interface and makes it again with
// the same name, MAC, addresses and routes, as a driver reload or a
// network configuration that re-creates a bond or VLAN does: a program
// that holds the old interface (a socket bound to its index) has lost it.
func (l *Lab) RecreateLANLink(node string) error {
	n, err := l.node(node)
	if err != nil {
		return err
	}
	for _, ifc := range n.Interfaces {
		if ifc.Segment != SegmentLAN {
			continue
		}
		seg := l.state.Bridges[ifc.bridge()]
		// Deleting the bridge's end deletes the pair.
		if err := ipBatch(seg, []string{"link del " + ifc.Port}); err != nil {
			return fmt.Errorf("deleting %s's %s: %w", node, ifc.Name, err)
		}
		if err := ipBatch(seg, bridgePortCmds(n, ifc)); err != nil {
			return fmt.Errorf("making %s's %s again: %w", node, ifc.Name, err)
		}
		cmds := append(hostLinkCmds(ifc), l.state.nodeRoutes(n)...)
		if l.state.Client2.Netns != "" {
			other4, other6 := LAN2v4, LAN2v6
			if n.onLAN2() {
				other4, other6 = LANv4, LANv6
			}
			cmds = append(cmds, fmt.Sprintf("route replace %s via %s", other4, l.state.routerOn(n, 4)),
				fmt.Sprintf("route replace %s via %s", other6, l.state.routerOn(n, 6)))
		}
		if err := ipBatch(n.Netns, cmds); err != nil {
			return fmt.Errorf("configuring %s's %s again: %w", node, ifc.Name, err)
		}
		return nil
	}
	return fmt.Errorf("node %s has no LAN interface", node)
}

// gateway is the first address of a pod range, the node's address on cni0.
func gateway(cidr string) string {
	return netip.MustParsePrefix(cidr).Addr().Next().String()
}
