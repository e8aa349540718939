package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// gatherText renders the named metric families of reg in the text format.
func gatherText(t *testing.T, reg prometheus.Gatherer, names ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, n := range names {
			if mf.GetName() == n {
				if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return b.String()
}

func TestResponderCollector(t *testing.T) {
	names := []string{
		"barelb_speaker_arp_requests_received_total", "barelb_speaker_arp_answers_sent_total",
		"barelb_speaker_ndp_solicitations_received_total", "barelb_speaker_ndp_answers_sent_total",
		"barelb_speaker_gratuitous_sent_total", "barelb_speaker_conflicts_total",
	}
	tests := []struct {
		name   string
		source func() []ResponderCounts
		want   string
	}{
		{name: "no source reports nothing", want: ""},
		{name: "no responder open reports nothing", source: func() []ResponderCounts { return nil }, want: ""},
		{
			name: "one series per interface and counter",
			source: func() []ResponderCounts {
				return []ResponderCounts{
					{Interface: "eth0", ARPRequests: 7, ARPAnswers: 3, NDPSolicitations: 5, NDPAnswers: 2, Gratuitous: 6, Conflicts: 1},
					{Interface: "eth1", ARPRequests: 1},
				}
			},
			want: `
# HELP barelb_speaker_arp_answers_sent_total ARP replies sent for announced addresses.
# TYPE barelb_speaker_arp_answers_sent_total counter
barelb_speaker_arp_answers_sent_total{interface="eth0"} 3
barelb_speaker_arp_answers_sent_total{interface="eth1"} 0
# HELP barelb_speaker_arp_requests_received_total ARP requests received, for any address.
# TYPE barelb_speaker_arp_requests_received_total counter
barelb_speaker_arp_requests_received_total{interface="eth0"} 7
barelb_speaker_arp_requests_received_total{interface="eth1"} 1
# HELP barelb_speaker_conflicts_total Announced addresses found in use by another host on the link.
# TYPE barelb_speaker_conflicts_total counter
barelb_speaker_conflicts_total{interface="eth0"} 1
barelb_speaker_conflicts_total{interface="eth1"} 0
# HELP barelb_speaker_gratuitous_sent_total Gratuitous ARP and unsolicited neighbor advertisements sent.
# TYPE barelb_speaker_gratuitous_sent_total counter
barelb_speaker_gratuitous_sent_total{interface="eth0"} 6
barelb_speaker_gratuitous_sent_total{interface="eth1"} 0
# HELP barelb_speaker_ndp_answers_sent_total IPv6 neighbor advertisements sent in answer for announced addresses.
# TYPE barelb_speaker_ndp_answers_sent_total counter
barelb_speaker_ndp_answers_sent_total{interface="eth0"} 2
barelb_speaker_ndp_answers_sent_total{interface="eth1"} 0
# HELP barelb_speaker_ndp_solicitations_received_total IPv6 neighbor solicitations received, for any address.
# TYPE barelb_speaker_ndp_solicitations_received_total counter
barelb_speaker_ndp_solicitations_received_total{interface="eth0"} 5
barelb_speaker_ndp_solicitations_received_total{interface="eth1"} 0
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			if _, err := NewSpeaker(reg, tt.source); err != nil {
				t.Fatal(err)
			}
			if got, want := gatherText(t, reg, names...), strings.TrimPrefix(tt.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestSpeakerGauges(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewSpeaker(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.AddressesAnnounced.Set(2)
	m.MemberlistMembers.Set(3)
	SetBool(m.MembershipFallback, true)
	SetBool(m.MembershipFallback, false)
	SetBool(m.MemberlistEnabled, true)
	m.KernelAnswersARP.Set(1)
	for name, want := range map[string]float64{
		"addresses_announced": 2, "memberlist_members": 3, "membership_fallback": 0, "memberlist_enabled": 1, "kernel_answers_arp": 1,
	} {
		var got float64
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range mfs {
			if mf.GetName() == "barelb_speaker_"+name {
				got, found = mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		if !found || got != want {
			t.Errorf("barelb_speaker_%s = %v (found %v), want %v", name, got, found, want)
		}
	}
}

// A second speaker in one process (tests start the program twice) reuses
// the registered metrics, and the collector reads the newest source.
func TestNewSpeakerTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := NewSpeaker(reg, func() []ResponderCounts { return []ResponderCounts{{Interface: "old", ARPAnswers: 1}} })
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewSpeaker(reg, func() []ResponderCounts { return []ResponderCounts{{Interface: "new", ARPAnswers: 9}} })
	if err != nil {
		t.Fatalf("registering the speaker's metrics twice: %v", err)
	}
	want := `
# HELP barelb_speaker_arp_answers_sent_total ARP replies sent for announced addresses.
# TYPE barelb_speaker_arp_answers_sent_total counter
barelb_speaker_arp_answers_sent_total{interface="new"} 9
`
	if got := gatherText(t, reg, "barelb_speaker_arp_answers_sent_total"); got != strings.TrimPrefix(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if first.AddressesAnnounced != second.AddressesAnnounced {
		t.Error("the second speaker got a gauge of its own, which the registry does not serve")
	}
}
