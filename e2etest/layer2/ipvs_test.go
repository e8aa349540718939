package layer2_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

// TestIPVSLikeNodes reproduces kube-proxy's IPVS mode, which puts every
// Service address on kube-ipvs0 of every node (the kernel here has no
// IPVS): the VIP goes on lo of every node. With strictARP's sysctls
// (arp_ignore=1, arp_announce=2) the kernels stay quiet and only the
// elected speaker answers ARP; with arp_ignore=0 every node's kernel
// answers — split brain — and every speaker must say so: a Warning Event
// on its Node and the Service, and barelb_speaker_kernel_answers_arp.
func TestIPVSLikeNodes(t *testing.T) {
	l := startLab(t)
	const vipText = "198.51.100.220"
	vip := netip.MustParseAddr(vipText)
	strict := []string{"sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"}
	onEveryNode(t, l, strict...)
	onEveryNode(t, l, "ip", "addr", "add", vipText+"/32", "dev", "lo")

	l.RunPod(t, "ipvs-0", "ipvs", "node1")
	l.RunPod(t, "ipvs-1", "ipvs", "node2")
	createService(t, l, svcSpec{name: "ipvs", app: "ipvs", port: 80, ip: vipText, ipv4Only: true})
	if ips := l.WaitIngress(t, "ipvs", 1); ips[0] != vipText {
		t.Fatalf("Service ipvs got %v, want %s", ips, vipText)
	}
	waitEndpoints4(t, l, "ipvs", 2)
	node := waitAnnouncer(t, l, "ipvs", "")
	mac := nodeMAC(t, l, node)

	t.Run("with strictARP only the elected speaker answers", func(t *testing.T) {
		seen := waitServed(t, l, vipText, node, 10)
		t.Logf("%s through %s (%s): %v", lab.URL(vipText), node, mac, seen)
		for answer := range seen {
			if answer != "ipvs-0" && answer != "ipvs-1" {
				t.Errorf("unexpected answer %q: %v", answer, seen)
			}
		}
		for i := range 3 {
			got := arpAnswerers(t, l, vip, time.Second)
			t.Logf("ARP request %d for %s answered by %v", i+1, vip, got)
			if len(got) != 1 || !strings.EqualFold(got[0], mac) {
				t.Errorf("ARP for %s answered by %v, want only %s (%s)", vip, got, node, mac)
			}
		}
		for _, n := range l.Nodes() {
			if v := l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_kernel_answers_arp", func(float64) bool { return true }, "present"); v != 0 {
				t.Errorf("%s: barelb_speaker_kernel_answers_arp = %v with strictARP, want 0", n.Name, v)
			}
		}
	})

	t.Run("without strictARP every kernel answers and every speaker says so", func(t *testing.T) {
		onEveryNode(t, l, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.all.arp_announce=0")
		start := time.Now()
		got := arpAnswerers(t, l, vip, time.Second)
		t.Logf("ARP request for %s answered by %v (split brain)", vip, got)
		if len(got) != len(l.Nodes()) {
			t.Errorf("ARP for %s answered by %v, want every node's kernel (%d)", vip, got, len(l.Nodes()))
		}
		for _, n := range l.Nodes() {
			msg := waitEventFor(t, l, "default", "Node", n.Name, corev1.EventTypeWarning, l2announcer.ReasonStrictARPOff)
			t.Logf("%s: Warning %s after %v: %s", n.Name, l2announcer.ReasonStrictARPOff, time.Since(start).Round(time.Millisecond), msg)
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_kernel_answers_arp", func(v float64) bool { return v == 1 }, "1")
			if log := l.SpeakerLog(t, n.Name); !strings.Contains(log, "strictARP: true") {
				t.Errorf("%s: the speaker's log has no line saying to set strictARP: true", n.Name)
			}
		}
		msg := waitEventFor(t, l, "default", "Service", "ipvs", corev1.EventTypeWarning, l2announcer.ReasonStrictARPOff)
		t.Logf("Service ipvs: Warning %s: %s", l2announcer.ReasonStrictARPOff, msg)
	})

	t.Run("with strictARP back the speakers say it is fixed", func(t *testing.T) {
		onEveryNode(t, l, strict...)
		for _, n := range l.Nodes() {
			waitEventFor(t, l, "default", "Node", n.Name, corev1.EventTypeNormal, l2announcer.ReasonStrictARPFixed)
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_kernel_answers_arp", func(v float64) bool { return v == 0 }, "0")
		}
		if got := arpAnswerers(t, l, vip, time.Second); len(got) != 1 || !strings.EqualFold(got[0], mac) {
			t.Errorf("ARP for %s answered by %v, want only %s (%s)", vip, got, node, mac)
		}
	})
}
