package layer2_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/config"
)

// TestForgedStatusNotAnnounced reproduces a second writer of a Service's
// status (issue 14): with the controller stopped, so that nothing rewrites
// it, a user points a Service's status at node2's own address and names
// barelb's pool. No speaker may answer for that address: the only ARP
// answer is node2's kernel's, and no ServiceL2Status claims the Service.
func TestForgedStatusNotAnnounced(t *testing.T) {
	l := startLab(t)
	ctx := context.Background()

	// The speakers work: a Service the controller served is announced.
	createService(t, l, svcSpec{name: "legit", app: "legit", port: 80, ipv4Only: true})
	l.WaitIngress(t, "legit", 1)
	waitAnnouncer(t, l, "legit", "")

	if err := l.Stop("cp", lab.ComponentController); err != nil {
		t.Fatal(err)
	}
	nodes := l.Nodes()
	victim := nodes[1]
	victimIP := victim.Addr(lab.SegmentLAN, 4)
	createService(t, l, svcSpec{name: "forged", app: "forged", port: 80, ipv4Only: true})
	var svc corev1.Service
	if err := l.Client().Get(ctx, client.ObjectKey{Namespace: "default", Name: "forged"}, &svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: victimIP.String()}}
	if err := l.Client().Status().Update(ctx, &svc); err != nil {
		t.Fatal(err)
	}
	svc.Annotations = map[string]string{config.AnnotationAllocatedFromPool: "lan"}
	if err := l.Client().Update(ctx, &svc); err != nil {
		t.Fatal(err)
	}

	// Give the speakers time to plan (they do in milliseconds), then
	// look for several seconds.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if node, err := l.L2Announcer("default", "forged"); err != nil || node != "" {
			t.Fatalf("the forged Service is announced by %q (%v); want by no node", node, err)
		}
		answerers := arpAnswerers(t, l, victimIP, 500*time.Millisecond)
		if !slices.Equal(answerers, []string{strings.ToLower(victim.MAC(lab.SegmentLAN))}) {
			t.Fatalf("ARP for %s (%s's address) answered by %v; want only %s's own %s", victimIP, victim.Name, answerers, victim.Name, victim.MAC(lab.SegmentLAN))
		}
	}
	for _, n := range nodes {
		if v := scrapeSpeaker(t, l, n.Name)["barelb_speaker_addresses_announced"]; n.Name != mustAnnouncer(t, l, "legit") && v != 0 {
			t.Errorf("%s announces %v addresses, want none (only the legit Service's announcer announces)", n.Name, v)
		}
	}
}

func mustAnnouncer(tb testing.TB, l *lab.Lab, svc string) string {
	tb.Helper()
	node, err := l.L2Announcer("default", svc)
	if err != nil {
		tb.Fatal(err)
	}
	return node
}
