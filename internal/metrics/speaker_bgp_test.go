package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSpeakerBGP(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewSpeakerBGP(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Registering twice on one registry reuses the metrics.
	again, err := NewSpeakerBGP(reg)
	if err != nil || again.SessionUp != m.SessionUp {
		t.Fatalf("second registration: %v", err)
	}
	SetBool(m.SessionUp.WithLabelValues("r1"), true)
	m.PrefixesAdvertised.WithLabelValues("r1").Set(3)
	m.UpdatesSent.WithLabelValues("r1").Add(5)
	SetBool(m.BFDSessionUp.WithLabelValues("r1"), true)
	SetBool(m.SessionUp.WithLabelValues("r2"), false)
	names := []string{"barelb_speaker_bgp_session_up", "barelb_speaker_bgp_prefixes_advertised", "barelb_speaker_bgp_updates_sent_total", "barelb_speaker_bfd_session_up"}
	got := gatherText(t, reg, names...)
	for _, want := range []string{
		`barelb_speaker_bgp_session_up{peer="r1"} 1`, `barelb_speaker_bgp_session_up{peer="r2"} 0`,
		`barelb_speaker_bgp_prefixes_advertised{peer="r1"} 3`, `barelb_speaker_bgp_updates_sent_total{peer="r1"} 5`,
		`barelb_speaker_bfd_session_up{peer="r1"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	m.DeletePeer("r1")
	if got := gatherText(t, reg, names...); strings.Contains(got, `"r1"`) {
		t.Errorf("series of a deleted peer remain:\n%s", got)
	}
}
