package l2announcer

import (
	"bytes"
	"net"
	"net/netip"
	"slices"

	"github.com/barelb/barelb/internal/layer2"
)

// A speaker's memberlist metadata starts with its version. Version 1 (of
// earlier speakers) is followed by the node's hardware addresses, 6 bytes
// each; version 2 by a flags byte, then the addresses. With metaSubnets
// set, version 2 ends with the node's subnets and their length in bytes
// (one byte): earlier version-2 readers take those bytes for more
// hardware addresses, which no frame on the LAN carries.
const (
	speakerMetaV1      = 1
	speakerMetaVersion = 2
	// metaReady: the speaker knows the cluster (it has made a plan from
	// the API's objects), so it may be elected.
	metaReady = 1 << 0
	// metaSubnets: the metadata ends with the node's subnets.
	metaSubnets = 1 << 1
)

// SpeakerMeta is a speaker's memberlist metadata (at most max bytes):
// whether it is ready to be elected (it has read the cluster from the API
// and made a plan), and the Ethernet addresses of its node's interfaces,
// so that every speaker can tell another speaker's answers and
// announcements on the LAN from a foreign host's (see
// layer2.Options.Speaker). Loopback interfaces and addresses that are not
// 6 bytes long or all zero are left out; so are those that do not fit.
func SpeakerMeta(ifaces []layer2.Interface, max int, ready bool) []byte {
	if max < 2 {
		return nil
	}
	var flags byte
	if ready {
		flags |= metaReady
	}
	meta := []byte{speakerMetaVersion, flags}
	for _, mac := range SpeakerMACs(ifaces) {
		if len(meta)+6 > max {
			break
		}
		meta = append(meta, mac...)
	}
	// The subnets, all or none: a node that published part of them would
	// lose the elections of the others' addresses.
	var section []byte
	for _, p := range SpeakerSubnets(ifaces) {
		section = append(section, byte(p.Addr().BitLen()/8), byte(p.Bits()))
		section = append(section, p.Addr().AsSlice()...)
	}
	if len(section) > 0 && len(section) <= 255 && len(meta)+len(section)+1 <= max {
		meta[1] |= metaSubnets
		meta = append(append(meta, section...), byte(len(section)))
	}
	return meta
}

// SpeakerSubnets are the subnets of a node's interfaces that may answer
// ARP/NDP (layer2.Interface.Answerable), masked, without repeats and
// without link-local ones: those the election holds a node's addresses to
// (election.L2Node.Subnets).
func SpeakerSubnets(ifaces []layer2.Interface) []netip.Prefix {
	var out []netip.Prefix
	for _, ifi := range ifaces {
		if !ifi.Answerable() {
			continue
		}
		for _, p := range ifi.Prefixes {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
			if !p.IsValid() || p.Addr().IsLinkLocalUnicast() || p.Addr().IsLoopback() || slices.Contains(out, p) {
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// MetaSubnets returns the subnets in a speaker's metadata; ok is false
// when it does not say (an earlier speaker, or no room).
func MetaSubnets(meta []byte) (subnets []netip.Prefix, ok bool) {
	section, ok := subnetSection(meta)
	if !ok {
		return nil, false
	}
	for len(section) >= 2 {
		n, bits := int(section[0]), int(section[1])
		if n != 4 && n != 16 || len(section) < 2+n {
			return nil, false
		}
		addr, _ := netip.AddrFromSlice(section[2 : 2+n])
		p := netip.PrefixFrom(addr, bits)
		if !p.IsValid() {
			return nil, false
		}
		subnets = append(subnets, p)
		section = section[2+n:]
	}
	if len(section) != 0 {
		return nil, false
	}
	return subnets, len(subnets) > 0
}

// subnetSection is the subnets part of meta.
func subnetSection(meta []byte) ([]byte, bool) {
	if len(meta) < 3 || meta[0] != speakerMetaVersion || meta[1]&metaSubnets == 0 {
		return nil, false
	}
	n := int(meta[len(meta)-1])
	if 2+n > len(meta)-1 {
		return nil, false
	}
	return meta[len(meta)-1-n : len(meta)-1], true
}

// SpeakerMACs are the Ethernet addresses of a node's interfaces that
// tell its speaker's frames on the LAN, in interface order, without
// repeats: loopback interfaces and addresses not 6 bytes long or all zero
// are left out.
func SpeakerMACs(ifaces []layer2.Interface) []net.HardwareAddr {
	var out []net.HardwareAddr
	for _, ifi := range ifaces {
		mac := ifi.HardwareAddr
		if ifi.Loopback || len(mac) != 6 || bytes.Equal(mac, make([]byte, 6)) {
			continue
		}
		if slices.ContainsFunc(out, func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) }) {
			continue // bridges and their first port share one
		}
		out = append(out, mac)
	}
	return out
}

// metaMACs returns the hardware addresses part of meta (nil when it is no
// speaker's metadata).
func metaMACs(meta []byte) []byte {
	switch {
	case len(meta) >= 1 && meta[0] == speakerMetaV1:
		return meta[1:]
	case len(meta) >= 2 && meta[0] == speakerMetaVersion:
		if section, ok := subnetSection(meta); ok {
			return meta[2 : len(meta)-1-len(section)]
		}
		return meta[2:]
	}
	return nil
}

// SpeakerReady tells whether a speaker's metadata says it may be elected:
// it has read the cluster from the API. Metadata of earlier speakers,
// which do not say, and none at all, count as ready.
func SpeakerReady(meta []byte) bool {
	if len(meta) >= 2 && meta[0] == speakerMetaVersion {
		return meta[1]&metaReady != 0
	}
	return true
}

// hasMAC tells whether mac is among the addresses of meta.
func hasMAC(meta []byte, mac net.HardwareAddr) bool {
	if len(mac) != 6 {
		return false
	}
	for rest := metaMACs(meta); len(rest) >= 6; rest = rest[6:] {
		if bytes.Equal(rest[:6], mac) {
			return true
		}
	}
	return false
}

// SpeakerOf names the member whose metadata (from SpeakerMeta) holds mac,
// the first in name order when several do; ok is false for none.
func SpeakerOf(metas map[string][]byte, mac net.HardwareAddr) (node string, ok bool) {
	names := make([]string, 0, len(metas))
	for name := range metas {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if hasMAC(metas[name], mac) {
			return name, true
		}
	}
	return "", false
}

// Subnets are the subnets each speaker seen in memberlist since this one
// started publishes (SpeakerMeta), by node; a speaker that does not say
// is absent. The announcer hands them to the election
// (election.L2Node.Subnets).
func (m *MemberlistMembers) Subnets() map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for name, meta := range m.Membership.Metadata() {
		if s, ok := MetaSubnets(meta); ok {
			out[name] = s
		}
	}
	return out
}

// Speaker names the speaker whose node has mac, among every speaker seen
// in memberlist since this one started (gone ones included: one that left
// answers on for its hand-over): wire it to layer2.Options.Speaker.
func (m *MemberlistMembers) Speaker(mac net.HardwareAddr) (node string, ok bool) {
	return SpeakerOf(m.Membership.Metadata(), mac)
}
