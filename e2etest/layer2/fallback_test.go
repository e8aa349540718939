package layer2_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

// TestMembershipFallback blocks memberlist's port between the nodes and
// restarts every speaker: memberlist cannot form, and each speaker falls
// back to the API's view of node readiness — one node still announces a
// Service — and says so: barelb_speaker_membership_fallback, a log line
// and, after 30 s, a Warning Event on its Node. Once the port opens,
// memberlist forms, and each speaker says that too.
func TestMembershipFallback(t *testing.T) {
	l := startLab(t)
	rules := [][]string{
		{"-p", "tcp", "--dport", "7946", "-j", "DROP"},
		{"-p", "udp", "--dport", "7946", "-j", "DROP"},
	}
	for _, r := range rules {
		onEveryNode(t, l, append([]string{"iptables", "-w", "-I", "INPUT"}, r...)...)
	}
	for _, n := range l.Nodes() {
		if err := l.Restart(n.Name, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, n := range l.Nodes() {
		if err := l.WaitReady(ctx, n.Name, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
		}
	}
	restarted := time.Now()

	t.Run("without memberlist every speaker falls back to node readiness and says so", func(t *testing.T) {
		for _, n := range l.Nodes() {
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_membership_fallback", func(v float64) bool { return v == 1 }, "1")
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 1 }, "1 (itself)")
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_enabled", func(v float64) bool { return v == 1 }, "1")
		}
		l.RunPod(t, "fb-0", "fb", "node1")
		createService(t, l, svcSpec{name: "fb", app: "fb", port: 80, ipv4Only: true})
		ip := l.WaitIngress(t, "fb", 1)[0]
		waitEndpoints4(t, l, "fb", 1)
		node := waitAnnouncer(t, l, "fb", "")
		seen := waitServed(t, l, ip, node, 3)
		t.Logf("without memberlist, %s announces %s: %v", node, ip, seen)
		for _, n := range l.Nodes() {
			msg := waitEventFor(t, l, "default", "Node", n.Name, corev1.EventTypeWarning, l2announcer.ReasonMembershipFallback)
			t.Logf("%s: Warning %s %v after the restart: %s", n.Name, l2announcer.ReasonMembershipFallback,
				time.Since(restarted).Round(time.Second), msg)
			if log := l.SpeakerLog(t, n.Name); !strings.Contains(log, "memberlist has not formed") {
				t.Errorf("%s: the speaker's log does not say that memberlist has not formed", n.Name)
			}
		}
		if node2, err := l.L2Announcer("default", "fb"); err != nil || node2 != node {
			t.Errorf("ServiceL2Status of fb names %q (%v), want %s alone", node2, err, node)
		}
	})

	t.Run("once the port opens memberlist forms and every speaker says so", func(t *testing.T) {
		for _, r := range rules {
			onEveryNode(t, l, append([]string{"iptables", "-w", "-D", "INPUT"}, r...)...)
		}
		opened := time.Now()
		for _, n := range l.Nodes() {
			msg := waitEventFor(t, l, "default", "Node", n.Name, corev1.EventTypeNormal, l2announcer.ReasonMembershipFormed)
			t.Logf("%s: Normal %s %v after opening the port: %s", n.Name, l2announcer.ReasonMembershipFormed,
				time.Since(opened).Round(time.Millisecond), msg)
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_membership_fallback", func(v float64) bool { return v == 0 }, "0")
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 3 }, "3")
		}
	})
}
