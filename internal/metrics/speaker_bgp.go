package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// SpeakerBGP holds the speaker's BGP-mode metrics, labelled by the
// BGPPeer's name. A peer's series are deleted when this node stops
// opening a session with it (DeletePeer), so that a removed peer does not
// linger as "down".
type SpeakerBGP struct {
	// SessionUp is 1 while the BGP session with the peer is established.
	SessionUp *prometheus.GaugeVec
	// PrefixesAdvertised counts the prefixes handed to the peer's session.
	PrefixesAdvertised *prometheus.GaugeVec
	// UpdatesSent counts route changes (prefixes added, changed or
	// withdrawn) handed to the peer's session.
	UpdatesSent *prometheus.CounterVec
	// BFDSessionUp is 1 while the BFD session with the peer is Up; peers
	// without a bfdProfile have no series.
	BFDSessionUp *prometheus.GaugeVec
}

// NewSpeakerBGP makes the BGP-mode metrics and registers them on reg.
func NewSpeakerBGP(reg prometheus.Registerer) (*SpeakerBGP, error) {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "barelb", Subsystem: "speaker", Name: name, Help: help}, []string{"peer"})
	}
	m := &SpeakerBGP{
		SessionUp:          gauge("bgp_session_up", "1 while the BGP session with the peer (a BGPPeer selecting this node) is established."),
		PrefixesAdvertised: gauge("bgp_prefixes_advertised", "Prefixes this node advertises to the peer."),
		UpdatesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "barelb", Subsystem: "speaker", Name: "bgp_updates_sent_total",
			Help: "Route changes (prefixes added, changed or withdrawn) sent to the peer's session."}, []string{"peer"}),
		BFDSessionUp: gauge("bfd_session_up", "1 while the BFD session with the peer is Up (peers with a bfdProfile only)."),
	}
	var err error
	if m.SessionUp, err = register(reg, m.SessionUp); err != nil {
		return nil, err
	}
	if m.PrefixesAdvertised, err = register(reg, m.PrefixesAdvertised); err != nil {
		return nil, err
	}
	if m.UpdatesSent, err = register(reg, m.UpdatesSent); err != nil {
		return nil, err
	}
	if m.BFDSessionUp, err = register(reg, m.BFDSessionUp); err != nil {
		return nil, err
	}
	return m, nil
}

// DeletePeer removes every series of a peer.
func (m *SpeakerBGP) DeletePeer(peer string) {
	m.SessionUp.DeleteLabelValues(peer)
	m.PrefixesAdvertised.DeleteLabelValues(peer)
	m.UpdatesSent.DeleteLabelValues(peer)
	m.BFDSessionUp.DeleteLabelValues(peer)
}
