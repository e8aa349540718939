package layer2_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

// TestSelection proves in the lab that the L2Advertisement's node
// selectors and interfaces hold: the default interface rule answers on the
// LAN interface (and the speaker's metrics count the answers), a node
// selector picking one node makes it the only announcer, an interface
// without the address's subnet takes the answers off the LAN, and a
// missing interface means no announcement, said in a log line and an
// Event.
func TestSelection(t *testing.T) {
	l := startLab(t)
	l.RunPod(t, "sel-0", "sel", "node1")
	createService(t, l, svcSpec{name: "sel", app: "sel", port: 80})
	ips := l.WaitIngress(t, "sel", 2)
	l.WaitEndpoints(t, "sel", 1)
	lanIf := l.Nodes()[0].Interface(lab.SegmentLAN)
	otherIf := l.Nodes()[0].Interface(lab.SegmentRouter)

	var first string
	t.Run("the default rule answers on the LAN interface, and the metrics count it", func(t *testing.T) {
		first = waitAnnouncer(t, l, "sel", "")
		lab.Eventually(t, 30*time.Second, "ServiceL2Status interfaces ["+lanIf+"]", func() (bool, string) {
			s := statusOf(t, l, "sel")
			return s != nil && reflect.DeepEqual(interfacesOf(s), []string{lanIf}), fmt.Sprint(s)
		})
		for _, ip := range ips {
			seen := waitServed(t, l, ip, first, 5)
			t.Logf("%s through %s: %v", lab.URL(ip), first, seen)
		}
		// The membership gauges are refreshed every second: memberlist may
		// have formed a moment ago.
		var m map[string]float64
		lab.Eventually(t, 30*time.Second, "memberlist_members 3 and membership_fallback 0 on "+first, func() (bool, string) {
			m = scrapeSpeaker(t, l, first)
			return m["barelb_speaker_memberlist_members"] == 3 && m["barelb_speaker_membership_fallback"] == 0, speakerSeries(m)
		})
		t.Logf("metrics of %s after traffic:\n%s", first, speakerSeries(m))
		label := fmt.Sprintf(`{interface=%q}`, lanIf)
		for _, name := range []string{"arp_requests_received_total", "arp_answers_sent_total",
			"ndp_solicitations_received_total", "ndp_answers_sent_total", "gratuitous_sent_total"} {
			if v := m["barelb_speaker_"+name+label]; v <= 0 {
				t.Errorf("%s: barelb_speaker_%s%s = %v, want > 0", first, name, label, v)
			}
		}
		for series, want := range map[string]float64{
			"barelb_speaker_addresses_announced":     2,
			"barelb_speaker_memberlist_members":      3,
			"barelb_speaker_membership_fallback":     0,
			"barelb_speaker_kernel_answers_arp":      0,
			"barelb_speaker_conflicts_total" + label: 0,
		} {
			if got, ok := m[series]; !ok || got != want {
				t.Errorf("%s: %s = %v (present %v), want %v", first, series, got, ok, want)
			}
		}
		for _, n := range l.Nodes() {
			if n.Name == first {
				continue
			}
			if v := scrapeSpeaker(t, l, n.Name)["barelb_speaker_addresses_announced"]; v != 0 {
				t.Errorf("%s: barelb_speaker_addresses_announced = %v, want 0 (it does not announce)", n.Name, v)
			}
		}
	})

	// A node that did not win picks itself out by a label of its own.
	target := "node2"
	if first == target {
		target = "node3"
	}
	t.Run("a node selector picking one node makes it the only announcer", func(t *testing.T) {
		labelNode(t, l, target, "barelb.io/e2e-announce", "yes")
		editAdvertisement(t, l, func(s *barelbv1beta1.L2AdvertisementSpec) {
			s.NodeSelectors = []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"barelb.io/e2e-announce": "yes"}}}
		})
		start := time.Now()
		waitAnnouncer(t, l, "sel", target)
		t.Logf("announcement moved from %s to %s %v after the edit", first, target, time.Since(start).Round(time.Millisecond))
		for _, ip := range ips {
			seen := waitServed(t, l, ip, target, 5)
			mac, state := l.Neighbour("client", ip)
			t.Logf("%s: %v; client: neigh %s lladdr %s %s (%s)", lab.URL(ip), seen, ip, mac, state, l.NodeOfMAC(mac))
		}
		// Only that node announces, and keeps announcing.
		time.Sleep(time.Second)
		if node, err := l.L2Announcer("default", "sel"); err != nil || node != target {
			t.Errorf("ServiceL2Status of sel names %q (%v), want %s alone", node, err, target)
		}
		for _, n := range l.Nodes() {
			want := 0.0
			if n.Name == target {
				want = 2
			}
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_addresses_announced", func(v float64) bool { return v == want }, fmt.Sprint(want))
		}
	})

	t.Run("an interface without the address's subnet takes the answers off the LAN", func(t *testing.T) {
		editAdvertisement(t, l, func(s *barelbv1beta1.L2AdvertisementSpec) { s.Interfaces = []string{otherIf} })
		lab.Eventually(t, 30*time.Second, "ServiceL2Status naming "+target+" on "+otherIf, func() (bool, string) {
			s := statusOf(t, l, "sel")
			return s != nil && s.Status.Node == target && reflect.DeepEqual(interfacesOf(s), []string{otherIf}), fmt.Sprint(s)
		})
		assertUnreachable(t, l, ips[0])
		l.WaitSpeakerMetric(t, target, fmt.Sprintf(`barelb_speaker_gratuitous_sent_total{interface=%q}`, otherIf),
			func(v float64) bool { return v > 0 }, "> 0 (announced there)")
	})

	t.Run("a missing interface means no announcement, said in a log line and an Event", func(t *testing.T) {
		editAdvertisement(t, l, func(s *barelbv1beta1.L2AdvertisementSpec) { s.Interfaces = []string{"nope0"} })
		lab.Eventually(t, 30*time.Second, "no ServiceL2Status of sel", func() (bool, string) {
			node, err := l.L2Announcer("default", "sel")
			return err == nil && node == "", node
		})
		msg := waitEventFor(t, l, "default", "Service", "sel", corev1.EventTypeWarning, l2announcer.ReasonNoInterface)
		t.Logf("Warning %s on Service sel: %s", l2announcer.ReasonNoInterface, msg)
		if log := l.SpeakerLog(t, target); !strings.Contains(log, "no interface may answer") {
			t.Errorf("the log of %s's speaker does not say that no interface may answer", target)
		}
		assertUnreachable(t, l, ips[0])
		l.WaitSpeakerMetric(t, target, "barelb_speaker_addresses_announced", func(v float64) bool { return v == 0 }, "0")
	})

	t.Run("without selectors and interfaces the default rule is back", func(t *testing.T) {
		editAdvertisement(t, l, func(s *barelbv1beta1.L2AdvertisementSpec) { s.Interfaces, s.NodeSelectors = nil, nil })
		node := waitAnnouncer(t, l, "sel", "")
		lab.Eventually(t, 30*time.Second, "ServiceL2Status interfaces ["+lanIf+"]", func() (bool, string) {
			s := statusOf(t, l, "sel")
			return s != nil && reflect.DeepEqual(interfacesOf(s), []string{lanIf}), fmt.Sprint(s)
		})
		for _, ip := range ips {
			seen := waitServed(t, l, ip, node, 3)
			t.Logf("%s through %s again: %v", lab.URL(ip), node, seen)
		}
	})
}

// assertUnreachable checks that the client, its neighbour entry for ip
// flushed, gets no answer for ip from the LAN.
func assertUnreachable(t *testing.T, l *lab.Lab, ip string) {
	t.Helper()
	if _, err := ipIn(l.ClientHost().Netns, "neigh", "flush", "to", ip); err != nil {
		t.Fatal(err)
	}
	if answer, err := l.Get("client", lab.URL(ip), 2*time.Second); err == nil {
		t.Errorf("the client reached %s (%q); want no answer on the LAN", ip, answer)
	}
	if mac, state := l.Neighbour("client", ip); mac != "" {
		t.Errorf("the client resolved %s to %s %s (%s); want no answer on the LAN", ip, mac, state, l.NodeOfMAC(mac))
	} else {
		t.Logf("client: neigh %s %s (no answer)", ip, state)
	}
}
