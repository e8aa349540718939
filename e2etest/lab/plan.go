package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// The address plan; see the package documentation.
const (
	LANv4       = "198.51.100.0/24"
	LANv6       = "2001:db8:100::/64"
	RouterSegv4 = "203.0.113.0/26"
	RouterSegv6 = "2001:db8:200::/64"
	ExtSegv4    = "203.0.113.64/26"
	ExtSegv6    = "2001:db8:300::/64"
	// LAN2v4 and LAN2v6 are the second LAN segment's subnets
	// (Options.SecondLAN), with the router between the two LANs.
	LAN2v4         = "203.0.113.128/26"
	LAN2v6         = "2001:db8:400::/64"
	PodsV4         = "198.18.0.0/16"
	PodsV6         = "2001:db8:10::/48"
	ServicesV4     = "198.19.0.0/16"
	ServicesV6     = "2001:db8:ffff::/108"
	PoolV4         = "198.51.100.200-198.51.100.239"
	PoolV6         = "2001:db8:100::200-2001:db8:100::239"
	APIServerPort  = 6443
	RouterASN      = 64500
	NodeASN        = 64512
	controlPlaneIP = "198.51.100.10"
)

// Segment names used in [Interface.Segment].
const (
	SegmentLAN    = "lan"
	SegmentRouter = "router"
	SegmentExt    = "ext"
	// SegmentLAN2 is the bridge of the second LAN (Options.SecondLAN).
	// A host's link there is still its SegmentLAN link (its LAN, where
	// its node address is), plugged into this bridge (Interface.Bridge).
	SegmentLAN2 = "lan2"
)

// Interface is one link of a host.
type Interface struct {
	Name      string   `json:"name"`
	Segment   string   `json:"segment"`
	MAC       string   `json:"mac"`
	Addresses []string `json:"addresses"` // CIDR notation, IPv4 first
	// Port is the peer of this link on the segment's bridge, in the
	// segment's namespace (empty for the point-to-point ext link).
	Port string `json:"bridgePort,omitempty"`
	// Bridge is the segment whose bridge the link is plugged into, when
	// not Segment's own (a LAN link on the second LAN).
	Bridge string `json:"bridge,omitempty"`
}

// bridge is the segment whose bridge the link is plugged into.
func (i Interface) bridge() string {
	if i.Bridge != "" {
		return i.Bridge
	}
	return i.Segment
}

// Host is a network namespace acting as a machine.
type Host struct {
	Name       string      `json:"name"`
	Netns      string      `json:"netns"`
	Interfaces []Interface `json:"interfaces"`
	// PodCIDRs are a node's pod ranges (nodes only).
	PodCIDRs []string `json:"podCIDRs,omitempty"`
}

// Addr returns the host's first address on a segment in the given family
// (4 or 6), or the zero Addr.
func (h Host) Addr(segment string, family int) netip.Addr {
	for _, ifc := range h.Interfaces {
		if ifc.Segment != segment {
			continue
		}
		for _, a := range ifc.Addresses {
			p := netip.MustParsePrefix(a)
			if (family == 4) == p.Addr().Is4() {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}

// MAC returns the MAC address of the host's link on a segment.
func (h Host) MAC(segment string) string {
	for _, ifc := range h.Interfaces {
		if ifc.Segment == segment {
			return ifc.MAC
		}
	}
	return ""
}

// Interface returns the name of the host's link on a segment.
func (h Host) Interface(segment string) string {
	for _, ifc := range h.Interfaces {
		if ifc.Segment == segment {
			return ifc.Name
		}
	}
	return ""
}

// Pools are the address ranges left free for barelb's address pools.
type Pools struct {
	IPv4 string `json:"ipv4"`
	IPv6 string `json:"ipv6"`
}

// State describes a running lab; `lab up` prints it and the supervisor
// keeps it in STATE_DIR/state.json.
type State struct {
	Prefix   string `json:"prefix"`
	StateDir string `json:"stateDir"`
	// Kubeconfig reaches the API server from the root namespace through
	// the loopback forwarder.
	Kubeconfig string `json:"kubeconfig"`
	// InternalKubeconfig reaches the API server from inside the lab's
	// namespaces (for kube-proxy, the speaker, the controller).
	InternalKubeconfig string `json:"internalKubeconfig"`
	APIServer          string `json:"apiServer"`
	Forwarder          string `json:"forwarder"`
	SupervisorPID      int    `json:"supervisorPID,omitempty"`
	// Barelb tells whether the lab runs barelb's controller and speakers.
	Barelb bool `json:"barelb"`
	// Kubelets tells whether the nodes are real (containerd and kubelet).
	Kubelets     bool   `json:"kubelets,omitempty"`
	LabBinary    string `json:"labBinary"`
	ControlPlane Host   `json:"controlPlane"`
	Nodes        []Host `json:"nodes"`
	Client       Host   `json:"client"`
	// Client2 is a client on the second LAN (Options.SecondLAN; its
	// Netns is empty otherwise).
	Client2   Host  `json:"client2,omitempty"`
	Router    Host  `json:"router"`
	Ext       Host  `json:"ext"`
	RouterASN int   `json:"routerASN"`
	NodeASN   int   `json:"nodeASN"`
	Pools     Pools `json:"pools"`
	// Bridges are the namespaces holding the segments' bridges (br0).
	Bridges map[string]string `json:"bridges"`
}

func mac(segment, host byte) string {
	return fmt.Sprintf("02:00:00:00:%02x:%02x", segment, host)
}

// podBridgeMAC is the MAC address of a node's pods' bridge (cni0):
// segment 05, the node's host byte.
func podBridgeMAC(n Host) string {
	for _, ifc := range n.Interfaces {
		if ifc.Name == "eth0" {
			return "02:00:00:00:05:" + ifc.MAC[len(ifc.MAC)-2:]
		}
	}
	return mac(5, 0)
}

// plan computes the topology of a lab without touching the system. With
// secondLAN, the even nodes and a second client sit on a second LAN
// (LAN2v4, LAN2v6) and the router routes between the two.
func plan(prefix string, nodes int, secondLAN bool) State {
	ns := func(s string) string { return prefix + "-" + s }
	lan := func(last int, port string) Interface {
		return Interface{Name: "eth0", Segment: SegmentLAN, MAC: mac(1, byte(last)), Port: prefix + "-" + port,
			Addresses: []string{fmt.Sprintf("198.51.100.%d/24", last), fmt.Sprintf("2001:db8:100::%d/64", last)}}
	}
	rseg := func(last int, port string) Interface {
		return Interface{Name: "eth1", Segment: SegmentRouter, MAC: mac(2, byte(last)), Port: prefix + "-r" + port,
			Addresses: []string{fmt.Sprintf("203.0.113.%d/26", last), fmt.Sprintf("2001:db8:200::%d/64", last)}}
	}
	s := State{
		Prefix:       prefix,
		ControlPlane: Host{Name: "cp", Netns: ns("cp"), Interfaces: []Interface{lan(10, "cp")}},
		Client:       Host{Name: "client", Netns: ns("client"), Interfaces: []Interface{lan(100, "client")}},
		Router: Host{Name: "router", Netns: ns("router"), Interfaces: []Interface{
			{Name: "eth0", Segment: SegmentRouter, MAC: mac(2, 1), Port: prefix + "-router",
				Addresses: []string{"203.0.113.1/26", "2001:db8:200::1/64"}},
			{Name: "eth1", Segment: SegmentExt, MAC: mac(3, 65), Addresses: []string{"203.0.113.65/26", "2001:db8:300::1/64"}},
		}},
		Ext: Host{Name: "ext", Netns: ns("ext"), Interfaces: []Interface{
			{Name: "eth0", Segment: SegmentExt, MAC: mac(3, 66), Addresses: []string{"203.0.113.66/26", "2001:db8:300::2/64"}},
		}},
		RouterASN: RouterASN,
		NodeASN:   NodeASN,
		Pools:     Pools{IPv4: PoolV4, IPv6: PoolV6},
		APIServer: fmt.Sprintf("https://%s:%d", controlPlaneIP, APIServerPort),
		Bridges:   map[string]string{SegmentLAN: ns("lan"), SegmentRouter: ns("rtr")},
	}
	lan2 := func(last int, port string) Interface {
		return Interface{Name: "eth0", Segment: SegmentLAN, Bridge: SegmentLAN2, MAC: mac(4, byte(last)), Port: prefix + "-" + port,
			Addresses: []string{fmt.Sprintf("203.0.113.%d/26", 128+last), fmt.Sprintf("2001:db8:400::%d/64", last)}}
	}
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("node%d", i)
		link := lan(10+i, fmt.Sprintf("n%d", i))
		if secondLAN && i%2 == 0 {
			link = lan2(10+i, fmt.Sprintf("n%d", i))
		}
		s.Nodes = append(s.Nodes, Host{
			Name: name, Netns: ns(name),
			Interfaces: []Interface{link, rseg(10+i, fmt.Sprintf("n%d", i))},
			PodCIDRs:   []string{fmt.Sprintf("198.18.%d.0/24", i), fmt.Sprintf("2001:db8:10:%x::/64", i)},
		})
	}
	if secondLAN {
		s.Bridges[SegmentLAN2] = ns("lan2")
		s.Client2 = Host{Name: "client2", Netns: ns("client2"), Interfaces: []Interface{lan2(50, "client2")}}
		// The router's legs on both LANs (.1 of each), after its router
		// and ext links.
		s.Router.Interfaces = append(s.Router.Interfaces,
			Interface{Name: "eth2", Segment: SegmentLAN, MAC: mac(1, 1), Port: prefix + "-rlan",
				Addresses: []string{"198.51.100.1/24", "2001:db8:100::1/64"}},
			Interface{Name: "eth3", Segment: SegmentLAN, Bridge: SegmentLAN2, MAC: mac(4, 1), Port: prefix + "-rlan2",
				Addresses: []string{"203.0.113.129/26", "2001:db8:400::1/64"}})
	}
	return s
}

// onLAN2 tells whether h's LAN link is on the second LAN.
func (h Host) onLAN2() bool {
	for _, ifc := range h.Interfaces {
		if ifc.Segment == SegmentLAN {
			return ifc.bridge() == SegmentLAN2
		}
	}
	return false
}

// hosts returns every host of the lab.
func (s *State) hosts() []Host {
	hosts := []Host{s.ControlPlane, s.Client, s.Router, s.Ext}
	if s.Client2.Netns != "" {
		hosts = append(hosts, s.Client2)
	}
	return append(hosts, s.Nodes...)
}

// Host returns the host with the given name: "cp", "client", "router",
// "ext" or a node's name.
func (s *State) Host(name string) (Host, error) {
	for _, h := range s.hosts() {
		if h.Name == name || h.Netns == name {
			return h, nil
		}
	}
	return Host{}, fmt.Errorf("no host %q in lab %s", name, s.Prefix)
}

// labRanges are every range the lab uses.
var labRanges = []string{LANv4, LANv6, RouterSegv4, RouterSegv6, ExtSegv4, ExtSegv6, PodsV4, PodsV6, ServicesV4, ServicesV6, LAN2v4, LAN2v6}

// checkRootRoutes refuses a plan whose ranges overlap a route of the root
// namespace.
func checkRootRoutes() error {
	for _, family := range []string{"-4", "-6"} {
		out, err := exec.Command("ip", "-j", family, "route", "show", "table", "all").Output()
		if err != nil {
			return fmt.Errorf("listing the root namespace's routes: %w", err)
		}
		var routes []struct {
			Dst string `json:"dst"`
		}
		if err := json.Unmarshal(out, &routes); err != nil {
			return fmt.Errorf("parsing `ip -j route`: %w", err)
		}
		for _, r := range routes {
			if r.Dst == "" || r.Dst == "default" {
				continue
			}
			dst := r.Dst
			if !strings.Contains(dst, "/") {
				a, err := netip.ParseAddr(dst)
				if err != nil {
					continue
				}
				dst = netip.PrefixFrom(a, a.BitLen()).String()
			}
			p, err := netip.ParsePrefix(dst)
			if err != nil {
				continue
			}
			if p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast() || p.Addr().IsLoopback() {
				continue
			}
			for _, r := range labRanges {
				if netip.MustParsePrefix(r).Overlaps(p) {
					return fmt.Errorf("the lab's range %s overlaps the root namespace's route to %s; refusing to start", r, p)
				}
			}
		}
	}
	return nil
}
