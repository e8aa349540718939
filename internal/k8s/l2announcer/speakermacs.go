package l2announcer

import (
	"bytes"
	"net"
	"slices"

	"github.com/barelb/barelb/internal/layer2"
)

// A speaker's memberlist metadata starts with its version. Version 1 (of
// earlier speakers) is followed by the node's hardware addresses, 6 bytes
// each; version 2 by a flags byte, then the addresses.
const (
	speakerMetaV1      = 1
	speakerMetaVersion = 2
	// metaReady: the speaker knows the cluster (it has made a plan from
	// the API's objects), so it may be elected.
	metaReady = 1 << 0
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

// metaMACs returns the hardware addresses part of meta (nil when it is no
// speaker's metadata).
func metaMACs(meta []byte) []byte {
	switch {
	case len(meta) >= 1 && meta[0] == speakerMetaV1:
		return meta[1:]
	case len(meta) >= 2 && meta[0] == speakerMetaVersion:
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

// Speaker names the speaker whose node has mac, among every speaker seen
// in memberlist since this one started (gone ones included: one that left
// answers on for its hand-over): wire it to layer2.Options.Speaker.
func (m *MemberlistMembers) Speaker(mac net.HardwareAddr) (node string, ok bool) {
	return SpeakerOf(m.Membership.Metadata(), mac)
}
