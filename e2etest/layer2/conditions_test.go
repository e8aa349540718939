package layer2_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
)

// TestAnnouncedConditionNamesTheAnswerer checks the Service's
// barelb.io/Announced condition against the LAN (issue 14): the node it
// names is the one whose MAC answers ARP for the address, asked from the
// client's namespace; when that node's speaker stops, the condition names
// the node that took over, and that node answers.
func TestAnnouncedConditionNamesTheAnswerer(t *testing.T) {
	l := startLab(t)
	createService(t, l, svcSpec{name: "said", app: "said", port: 80, ipv4Only: true})
	vip := netip.MustParseAddr(l.WaitIngress(t, "said", 1)[0])

	first := waitAnnouncedNode(t, l, "said", vip, "")
	assertAnswerer(t, l, vip, first)
	if c := serviceCondition(t, l, "said", barelbv1beta1.ConditionAddressAssigned); c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, vip.String()) {
		t.Errorf("AddressAssigned: %+v, want True naming %s", c, vip)
	}

	if err := l.Stop(first, lab.ComponentSpeaker); err != nil {
		t.Fatal(err)
	}
	second := waitAnnouncedNode(t, l, "said", vip, first)
	assertAnswerer(t, l, vip, second)
}

// waitAnnouncedNode waits until the Service's Announced condition is True
// in layer 2, naming a node other than not, and returns that node.
func waitAnnouncedNode(tb testing.TB, l *lab.Lab, svc string, vip netip.Addr, not string) string {
	tb.Helper()
	var node string
	lab.Eventually(tb, 30*time.Second, "Announced condition of "+svc+" naming a node other than "+orAny(not), func() (bool, string) {
		c := serviceCondition(tb, l, svc, barelbv1beta1.ConditionAnnounced)
		if c == nil {
			return false, "no condition"
		}
		say := string(c.Status) + " " + c.Reason + ": " + c.Message
		if c.Status != metav1.ConditionTrue || c.Reason != barelbv1beta1.AnnouncedReasonLayer2 {
			return false, say
		}
		// "layer 2: node NODE answers ARP/NDP for VIP on IFACE"
		rest, ok := strings.CutPrefix(c.Message, "layer 2: node ")
		if !ok || !strings.Contains(c.Message, vip.String()) {
			return false, say
		}
		node, _, _ = strings.Cut(rest, " ")
		return node != not, say
	})
	return node
}

// assertAnswerer asks the LAN from the client who has vip: exactly node's
// MAC must answer.
func assertAnswerer(tb testing.TB, l *lab.Lab, vip netip.Addr, node string) {
	tb.Helper()
	want := strings.ToLower(nodeMAC(tb, l, node))
	var macs []string
	lab.Eventually(tb, 10*time.Second, "ARP answers for "+vip.String()+" from "+node+" only", func() (bool, string) {
		var err error
		macs, err = l.WhoHas(l.ClientHost().Name, vip)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(macs, []string{want}), strings.Join(macs, ",")
	})
	tb.Logf("the condition names %s; who has %s, asked from the client: %v", node, vip, macs)
}

func serviceCondition(tb testing.TB, l *lab.Lab, name, typ string) *metav1.Condition {
	tb.Helper()
	var svc corev1.Service
	if err := l.Client().Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, &svc); err != nil {
		tb.Fatal(err)
	}
	return meta.FindStatusCondition(svc.Status.Conditions, typ)
}
