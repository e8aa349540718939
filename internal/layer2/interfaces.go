package layer2

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Interface is what the interface rule needs to know of a host interface.
type Interface struct {
	Name string
	Up   bool
	// Loopback, NoARP and PointToPoint interfaces have no neighbours to
	// answer.
	Loopback, NoARP, PointToPoint bool
	// Enslaved interfaces are members of a bond or bridge, whose master
	// answers instead.
	Enslaved bool
	// Prefixes are the interface's addresses with their prefix lengths.
	Prefixes []netip.Prefix
	// HardwareAddr is the interface's MAC (nil when it has none).
	HardwareAddr net.HardwareAddr
}

// namesNeverAnswered are interfaces of kube-proxy, CNIs and pods: answering
// there would reach no LAN, or reach pods.
var namesNeverAnswered = []string{
	"kube-ipvs0", "kube-bridge", "nodelocaldns", "docker", "cni", "cali", "cilium", "lxc", "flannel",
	"vxlan", "genev", "tunl", "weave", "veth", "tap", "virbr", "wg", "tailscale", "ovs-system",
}

// Answerable tells whether the responder may ever answer on i.
func (i Interface) Answerable() bool {
	if !i.Up || i.Loopback || i.NoARP || i.PointToPoint || i.Enslaved {
		return false
	}
	for _, prefix := range namesNeverAnswered {
		if strings.HasPrefix(i.Name, prefix) {
			return false
		}
	}
	return true
}

// SelectInterfaces names the interfaces to answer for vip on, sorted:
//  1. with named interfaces (the L2Advertisement's interfaces), those of
//     them that exist and can answer at all — an operator's explicit choice
//     overrides the name patterns, not the physics (loopback, NOARP);
//  2. otherwise the answerable interfaces with an address whose subnet
//     holds vip: the usual case, where the VIP is taken from the nodes' LAN;
//  3. otherwise every answerable interface, for a VIP from a range routed
//     to the LAN without being part of its subnet.
func SelectInterfaces(vip netip.Addr, named []string, ifs []Interface) []string {
	var out []string
	switch {
	case len(named) > 0:
		for _, i := range ifs {
			if contains(named, i.Name) && i.Up && !i.Loopback && !i.NoARP && !i.PointToPoint {
				out = append(out, i.Name)
			}
		}
	default:
		for _, i := range ifs {
			if i.Answerable() && holds(i.Prefixes, vip) {
				out = append(out, i.Name)
			}
		}
		if len(out) == 0 {
			for _, i := range ifs {
				if i.Answerable() {
					out = append(out, i.Name)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

func holds(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Masked().Contains(ip) {
			return true
		}
	}
	return false
}

// iffNoARP is Linux's IFF_NOARP, which Go's net.Flags does not carry.
const iffNoARP = 0x80

// HostInterfaces reads the interfaces of the current network namespace,
// with what /sys adds to Go's view (NOARP, bond or bridge membership).
func HostInterfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out := make([]Interface, 0, len(ifs))
	for _, ifi := range ifs {
		i := Interface{
			Name:         ifi.Name,
			Up:           ifi.Flags&net.FlagUp != 0,
			Loopback:     ifi.Flags&net.FlagLoopback != 0,
			PointToPoint: ifi.Flags&net.FlagPointToPoint != 0,
			HardwareAddr: ifi.HardwareAddr,
		}
		sys := filepath.Join("/sys/class/net", ifi.Name)
		if raw, err := os.ReadFile(filepath.Join(sys, "flags")); err == nil {
			if flags, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 0, 32); err == nil {
				i.NoARP = flags&iffNoARP != 0
			}
		}
		if _, err := os.Lstat(filepath.Join(sys, "master")); err == nil {
			i.Enslaved = true
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("reading addresses of %s: %w", ifi.Name, err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				i.Prefixes = append(i.Prefixes, p)
			}
		}
		out = append(out, i)
	}
	return out, nil
}
