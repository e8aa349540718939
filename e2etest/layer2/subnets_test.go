package layer2_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

// TestTwoSubnets: nodes on two LAN segments (two bridges, as two VLANs
// would be, with the router between them), a pool per segment. Each
// address is answered only from its own segment, asked from a client on
// each; when its announcer's speaker dies, the other node of the same
// segment takes it over, and the other segment's nodes never answer. An
// address outside every node's subnet is announced anyway (the fallback
// rule), and an Event says so once.
func TestTwoSubnets(t *testing.T) {
	needsLab(t)
	l := lab.Start(t, lab.Options{Nodes: 4, Barelb: true, SecondLAN: true})
	l.ApplyFile(t, "config/samples/l2-pool.yaml")
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Client().Create(ctx, &barelbv1beta1.IPAddressPool{
		ObjectMeta: metav1.ObjectMeta{Name: "lan2", Namespace: "barelb-system"},
		Spec:       barelbv1beta1.IPAddressPoolSpec{Addresses: []barelbv1beta1.AddressRange{"203.0.113.180-203.0.113.189"}},
	}))
	must(l.Client().Create(ctx, &barelbv1beta1.L2Advertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "lan2", Namespace: "barelb-system"},
		Spec:       barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"lan2"}},
	}))
	// node1 and node3 on the first LAN (client), node2 and node4 on the
	// second (client2).
	segment := map[string][]string{"client": {"node1", "node3"}, "client2": {"node2", "node4"}}
	vips := map[string]string{ // Service → address
		"seg1-a": "198.51.100.200", "seg1-b": "198.51.100.201",
		"seg2-a": "203.0.113.180", "seg2-b": "203.0.113.181",
	}
	clientOf := func(svc string) (own, other string) {
		if strings.HasPrefix(svc, "seg1") {
			return "client", "client2"
		}
		return "client2", "client"
	}
	for svc, ip := range vips {
		createService(t, l, svcSpec{name: svc, app: svc, port: 80, ip: ip, ipv4Only: true})
	}

	// answeredBy waits until ip is answered on its own segment by one of
	// want, and by nothing on the other segment; it returns the node.
	answeredBy := func(t *testing.T, svc string, want []string) string {
		t.Helper()
		own, other := clientOf(svc)
		ip := netip.MustParseAddr(vips[svc])
		var node string
		lab.Eventually(t, 30*time.Second, fmt.Sprintf("%s (%s) answered on %s's segment by one of %v only", svc, ip, own, want), func() (bool, string) {
			macs, err := l.WhoHas(own, ip)
			if err != nil {
				return false, err.Error()
			}
			far, err := l.WhoHas(other, ip)
			if err != nil {
				return false, err.Error()
			}
			if len(macs) != 1 || len(far) != 0 {
				return false, fmt.Sprintf("%s hears %v, %s hears %v", own, macs, other, far)
			}
			node = l.NodeOfMAC(macs[0])
			return slices.Contains(want, node), fmt.Sprintf("answered by %s (%s)", node, macs[0])
		})
		if status := waitAnnouncer(t, l, svc, node); status != node {
			t.Errorf("%s: ServiceL2Status names %s, the LAN hears %s", svc, status, node)
		}
		return node
	}

	announcer := map[string]string{}
	t.Run("each address answered only from its segment", func(t *testing.T) {
		for _, svc := range []string{"seg1-a", "seg1-b", "seg2-a", "seg2-b"} {
			own, _ := clientOf(svc)
			announcer[svc] = answeredBy(t, svc, segment[own])
			t.Logf("%s (%s): answered by %s", svc, vips[svc], announcer[svc])
		}
	})

	t.Run("an address outside every subnet: announced by the fallback rule, said once", func(t *testing.T) {
		must(l.Client().Create(ctx, &barelbv1beta1.IPAddressPool{
			ObjectMeta: metav1.ObjectMeta{Name: "nowhere", Namespace: "barelb-system"},
			Spec:       barelbv1beta1.IPAddressPoolSpec{Addresses: []barelbv1beta1.AddressRange{"203.0.113.250-203.0.113.251"}},
		}))
		must(l.Client().Create(ctx, &barelbv1beta1.L2Advertisement{
			ObjectMeta: metav1.ObjectMeta{Name: "nowhere", Namespace: "barelb-system"},
			Spec:       barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"nowhere"}},
		}))
		createService(t, l, svcSpec{name: "nowhere", app: "nowhere", port: 80, ip: "203.0.113.250", ipv4Only: true})
		node := waitAnnouncer(t, l, "nowhere", "")
		lab.Eventually(t, 30*time.Second, "an AddressOutsideSubnets Event on the Service", func() (bool, string) {
			events := serviceEvents(l, "nowhere", l2announcer.ReasonOutsideSubnets)
			return len(events) == 1 && events[0].Count == 1 && strings.Contains(events[0].Message, node), fmt.Sprint(eventMessages(events))
		})
		// Once: later plans say nothing more.
		time.Sleep(3 * time.Second)
		if events := serviceEvents(l, "nowhere", l2announcer.ReasonOutsideSubnets); len(events) != 1 || events[0].Count != 1 {
			t.Errorf("Events: %v, want one, once", eventMessages(events))
		}
		t.Logf("announced by %s: %v", node, eventMessages(serviceEvents(l, "nowhere", l2announcer.ReasonOutsideSubnets)))
	})

	t.Run("failover stays within the segment", func(t *testing.T) {
		for _, svc := range []string{"seg2-a", "seg1-a"} {
			dead := announcer[svc]
			if dead == "" {
				t.Fatalf("%s: no announcer found", svc)
			}
			own, _ := clientOf(svc)
			survivor := slices.DeleteFunc(slices.Clone(segment[own]), func(n string) bool { return n == dead })
			start := time.Now()
			must(l.Kill(dead, "speaker"))
			node := answeredBy(t, svc, survivor)
			t.Logf("%s: speaker of %s killed, %s answers after %v", svc, dead, node, time.Since(start).Round(time.Millisecond))
			// The other segment's addresses are still answered there.
			for other := range vips {
				if o, _ := clientOf(other); o != own {
					answeredBy(t, other, segment[o])
				}
			}
			must(l.Restart(dead, "speaker"))
			must(l.WaitReady(ctx, dead, "speaker"))
		}
	})
}
