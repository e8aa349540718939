package l2announcer

import (
	"net/netip"

	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/layer2"
)

// nodePart is one node's part of the layer-2 plan: what it answers for,
// where, and for which Services.
type nodePart struct {
	// want are the addresses to answer for, each with its interfaces.
	want map[netip.Addr][]string
	// services maps each Service this node announces to one of its
	// addresses (the one its ServiceL2Status is written for).
	services map[string]netip.Addr
	// servicesOf are the Services of each address, sorted (the plan's).
	servicesOf map[netip.Addr][]string
	// probe marks the addresses probed before they are answered: those
	// that no other node announced for any of their Services (new to
	// the cluster), and the take-overs that probes says to probe.
	probe map[netip.Addr]bool
	// keys are the election keys of addresses elected under another
	// address's key (a dual-stack or shared group); nil when none.
	keys map[netip.Addr]netip.Addr
	// owners are the plan's owners (election.L2Announcement.Owner) of
	// the addresses this node announces that another node owns (or none
	// does); nil when none.
	owners map[netip.Addr]string
	// noInterface are the addresses won that no interface of host may
	// answer for.
	noInterface []election.L2Announcement
}

// takeOverProbes says which take-overs decide probes. A take-over is
// answered at once, for speed, when its last answerer is gone; but one
// that may still answer on the LAN is asked first (the probe), and its
// answer settles the address (HandlePeerClaim) before any neighbour is
// pointed here, so that a cut in the gossip moves nothing on the LAN.
type takeOverProbes struct {
	// all: this node's view of who died is suspect (see
	// MemberlistMembers.ViewSuspect): it is likely the one cut off from
	// the others' gossip, and every node it lost may still answer.
	all bool
	// from are the lost nodes that may still answer: their kernels are
	// up and their speakers were not seen gone (see
	// MemberlistMembers.MayAnswer). A take-over whose owner or last
	// announcer is one of them is probed.
	from map[string]bool
}

// decide picks node's part of plan. host are the node's interfaces;
// lastAnnouncers are the Services a ServiceL2Status names a node for,
// with that node (this one included: a speaker back from a restart finds
// its own name, and its addresses are not new); probes says which
// take-overs are probed. size is a hint for the maps (the last part's
// size).
func decide(plan []election.L2Announcement, node string, host []layer2.Interface, lastAnnouncers map[string]string, probes takeOverProbes, size int) nodePart {
	p := nodePart{
		want:       make(map[netip.Addr][]string, size),
		services:   make(map[string]netip.Addr, size),
		servicesOf: make(map[netip.Addr][]string, size),
		probe:      make(map[netip.Addr]bool, size),
	}
	for _, a := range plan {
		if a.Node != node {
			continue
		}
		if a.Key != a.Address {
			if p.keys == nil {
				p.keys = map[netip.Addr]netip.Addr{}
			}
			p.keys[a.Address] = a.Key
		}
		ifaces := layer2.SelectInterfaces(a.Address, a.Interfaces, host)
		if len(ifaces) == 0 {
			p.noInterface = append(p.noInterface, a)
			continue
		}
		p.want[a.Address] = ifaces
		if a.Owner != node {
			if p.owners == nil {
				p.owners = map[netip.Addr]string{}
			}
			p.owners[a.Address] = a.Owner
		}
		p.servicesOf[a.Address] = a.Services
		isNew, mayAnswer := true, a.Owner != node && probes.from[a.Owner]
		for _, s := range a.Services {
			p.services[s] = a.Address
			if last := lastAnnouncers[s]; last != "" {
				isNew = false
				mayAnswer = mayAnswer || (last != node && probes.from[last])
			}
		}
		p.probe[a.Address] = isNew || probes.all || mayAnswer
	}
	return p
}

// anyRejoined tells whether a speaker alive now was not in the last
// plan's membership (prev nil: the first plan, nobody rejoined).
func anyRejoined(prev, now map[string]bool) bool {
	if prev == nil {
		return false
	}
	for name, alive := range now {
		if alive && !prev[name] {
			return true
		}
	}
	return false
}
