package layer2_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

// TestMemberlistOff runs every speaker with --memberlist=false, the
// operator's choice where the memberlist port cannot be opened: no speaker
// listens on 7946, each says once in its log that node readiness decides,
// memberlist_enabled is 0 and membership_fallback stays 0, and no
// MembershipFallback Event appears, not even after the 30 s that raise it
// when memberlist fails to form. One node announces a Service, and another
// takes over once the announcing node turns NotReady in the API. A
// stopping speaker deletes its Lease and keeps answering for its
// hand-over while another node takes over.
func TestMemberlistOff(t *testing.T) {
	needsLab(t)
	l := lab.Start(t, lab.Options{Nodes: 3, Barelb: true, SpeakerArgs: []string{"--memberlist=false"}})
	// The speakers started before this: time since is a lower bound of
	// their age.
	up := time.Now()
	l.ApplyFile(t, "config/samples/l2-pool.yaml")
	ctx := context.Background()

	t.Run("speakers run without memberlist and say so once", func(t *testing.T) {
		for _, n := range l.Nodes() {
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_enabled", func(v float64) bool { return v == 0 }, "0")
			m := scrapeSpeaker(t, l, n.Name)
			if v, ok := m["barelb_speaker_membership_fallback"]; !ok || v != 0 {
				t.Errorf("%s: barelb_speaker_membership_fallback %v (present %v), want 0", n.Name, v, ok)
			}
			out, err := l.Exec(ctx, n.Name, "ss", "-H", "-l", "-n", "-t", "-u", "sport = :7946")
			if err != nil {
				t.Fatalf("ss on %s: %v: %s", n.Name, err, out)
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Errorf("%s: something listens on memberlist's port 7946:\n%s", n.Name, s)
			}
			if c := strings.Count(l.SpeakerLog(t, n.Name), "memberlist is off (--memberlist=false)"); c != 1 {
				t.Errorf("%s: the speaker's log says %d times that memberlist is off, want once", n.Name, c)
			}
		}
	})

	var ip, first string
	t.Run("one node announces a Service", func(t *testing.T) {
		l.RunPod(t, "mo-0", "mo", "node1")
		createService(t, l, svcSpec{name: "mo", app: "mo", port: 80, ipv4Only: true})
		ip = l.WaitIngress(t, "mo", 1)[0]
		waitEndpoints4(t, l, "mo", 1)
		first = waitAnnouncer(t, l, "mo", "")
		seen := waitServed(t, l, ip, first, 3)
		t.Logf("without memberlist, %s announces %s: %v", first, ip, seen)
		assertAnnouncedBy(t, l, ip, first)
	})
	if first == "" {
		t.FailNow()
	}

	var next string
	t.Run("another node takes over when the announcing node turns NotReady", func(t *testing.T) {
		start := time.Now()
		if err := l.SetNodeReady(ctx, first, false); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, 30*time.Second, "ServiceL2Status of mo naming a node other than "+first, func() (bool, string) {
			var err error
			next, err = l.L2Announcer("default", "mo")
			if err != nil {
				return false, err.Error()
			}
			return next != "" && next != first, "node " + orAny(next)
		})
		seen := waitServed(t, l, ip, next, 3)
		t.Logf("%s NotReady: %s announces %s after %v: %v", first, next, ip, time.Since(start).Round(time.Millisecond), seen)
		assertAnnouncedBy(t, l, ip, next)
	})

	t.Run("no MembershipFallback warning", func(t *testing.T) {
		// A speaker that fell back would warn DefaultFallbackWarning after
		// its start; wait past that.
		if wait := l2announcer.DefaultFallbackWarning + 5*time.Second - time.Since(up); wait > 0 {
			t.Logf("waiting %v more, until the speakers have run %v", wait.Round(time.Second), l2announcer.DefaultFallbackWarning+5*time.Second)
			time.Sleep(wait)
		}
		var events corev1.EventList
		if err := l.Client().List(ctx, &events, client.InNamespace("default")); err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			if e.Reason == l2announcer.ReasonMembershipFallback {
				t.Errorf("%s Event on %s %s: %s", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
			}
		}
		for _, n := range l.Nodes() {
			if v := scrapeSpeaker(t, l, n.Name)["barelb_speaker_membership_fallback"]; v != 0 {
				t.Errorf("%s: barelb_speaker_membership_fallback %v, want 0", n.Name, v)
			}
			if log := l.SpeakerLog(t, n.Name); strings.Contains(log, "memberlist has not formed") {
				t.Errorf("%s: the speaker's log warns that memberlist has not formed", n.Name)
			}
		}
	})
	if next == "" {
		t.FailNow()
	}

	// Last, as it leaves the address unannounced: a stopping speaker
	// keeps answering for its hand-over (2 s), but no other speaker learns
	// that it stops while its node stays Ready.
	t.Run("a stopping speaker hands over: its Lease goes, another node answers", func(t *testing.T) {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			t.Fatal(err)
		}
		stopped := make(chan error, 1)
		sigterm := time.Now()
		go func() { stopped <- l.Stop(next, lab.ComponentSpeaker) }()
		time.Sleep(200 * time.Millisecond)
		// Answered throughout: by the stopping speaker, or by its
		// successor once that one has announced (the stopping one then
		// stops answering: layer2.Responder.Leave).
		macs := arpAnswerers(t, l, addr, 500*time.Millisecond)
		if len(macs) == 0 {
			t.Errorf("no ARP answer for %s during %s's hand-over", ip, next)
		}
		t.Logf("ARP answers for %s 200 ms into %s's hand-over: %v (%s's MAC is %s)", ip, next, macs, next, nodeMAC(t, l, next))
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		t.Logf("the speaker of %s exited %v after SIGTERM", next, time.Since(sigterm).Round(time.Millisecond))
		lab.Eventually(t, 10*time.Second, "one other node answering "+ip+", the one its ServiceL2Status names", func() (bool, string) {
			node, err := l.L2Announcer("default", "mo")
			if err != nil || node == "" || node == next {
				return false, fmt.Sprintf("ServiceL2Status names %q (%v)", node, err)
			}
			macs := arpAnswerers(t, l, addr, 300*time.Millisecond)
			return len(macs) == 1 && strings.EqualFold(macs[0], nodeMAC(t, l, node)), fmt.Sprintf("answers from %v, status names %s", macs, node)
		})
	})
}

// assertAnnouncedBy checks that node alone announces ip: the only node
// whose barelb_speaker_addresses_announced is 1 (the others 0) and the
// only MAC answering an ARP request for it.
func assertAnnouncedBy(t *testing.T, l *lab.Lab, ip, node string) {
	t.Helper()
	for _, n := range l.Nodes() {
		want := 0.0
		if n.Name == node {
			want = 1
		}
		l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_addresses_announced", func(v float64) bool { return v == want }, fmt.Sprint(want))
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	macs := arpAnswerers(t, l, addr, time.Second)
	if len(macs) != 1 || !strings.EqualFold(macs[0], nodeMAC(t, l, node)) {
		t.Errorf("ARP answers for %s from %v, want %s's %s alone", ip, macs, node, nodeMAC(t, l, node))
	}
}
