package announcer

import (
	"bytes"
	"net"
	"slices"

	"github.com/barelb/barelb/internal/layer2"
)

// speakerMetaVersion starts a speaker's memberlist metadata; what follows
// is its hardware addresses, 6 bytes each.
const speakerMetaVersion = 1

// SpeakerMeta is a speaker's memberlist metadata (at most max bytes): the
// Ethernet addresses of its node's interfaces, so that every speaker can
// tell another speaker's answers and announcements on the LAN from a
// foreign host's (see layer2.Options.Speaker). Loopback interfaces and
// addresses that are not 6 bytes long or all zero are left out; so are
// those that do not fit.
func SpeakerMeta(ifaces []layer2.Interface, max int) []byte {
	if max < 1 {
		return nil
	}
	meta := []byte{speakerMetaVersion}
	for _, mac := range SpeakerMACs(ifaces) {
		if len(meta)+6 > max {
			break
		}
		meta = append(meta, mac...)
	}
	return meta
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

// hasMAC tells whether mac is among the addresses of meta.
func hasMAC(meta []byte, mac net.HardwareAddr) bool {
	if len(meta) == 0 || meta[0] != speakerMetaVersion || len(mac) != 6 {
		return false
	}
	for rest := meta[1:]; len(rest) >= 6; rest = rest[6:] {
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

// Speaker names the speaker whose node has mac, among every speaker seen
// in memberlist since this one started (gone ones included: one that left
// answers on for its hand-over): wire it to layer2.Options.Speaker.
func (m *MemberlistMembers) Speaker(mac net.HardwareAddr) (node string, ok bool) {
	return SpeakerOf(m.Membership.Metadata(), mac)
}
