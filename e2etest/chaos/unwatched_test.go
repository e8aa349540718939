package chaos_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// TestGossipCutUnwatched cuts from the gossip a node that its successor
// does not watch. Each speaker pings only the few members it watches
// (membership's watchFanout, 3: the names that follow it); in a larger
// cluster the node that takes an address over is often not among the
// lost node's watchers, and must still tell a cut in the gossip from a
// death before it answers. Five nodes: node2 watches node3, node4 and
// node5, not node1. The advertisement lets only node1 and node2 announce
// and prefers node1, so node1 announces everything and node2 is the only
// successor. Cut node1 from the gossip (LAN up): nothing may move.
func TestGossipCutUnwatched(t *testing.T) {
	l, assigned := startChaosLab(t, 5, corev1.ServiceExternalTrafficPolicyLocal)
	ctx := context.Background()
	var adv barelbv1beta1.L2Advertisement
	if err := l.Client().Get(ctx, client.ObjectKey{Namespace: "barelb-system", Name: "lan"}, &adv); err != nil {
		t.Fatal(err)
	}
	host := func(n string) barelbv1beta1.Selector {
		return barelbv1beta1.Selector{MatchLabels: map[string]barelbv1beta1.LabelValue{corev1.LabelHostname: barelbv1beta1.LabelValue(n)}}
	}
	adv.Spec.NodeSelectors = []barelbv1beta1.Selector{host("node1"), host("node2")}
	adv.Spec.PreferredNodeSelectors = []barelbv1beta1.WeightedNodeSelector{{Weight: 10, Preference: host("node1")}}
	if err := l.Client().Update(ctx, &adv); err != nil {
		t.Fatal(err)
	}
	checkOneAnswerer(t, l, assigned, 30*time.Second)
	// Quiet for a while: every speaker's cache holds the statuses that
	// name node1 (an address whose status named node2 itself would be
	// probed on that account).
	watchSettle(t, l, assigned, time.Now(), 0, 30*time.Second)
	before := checkOneAnswerer(t, l, assigned, 30*time.Second)
	total := 0
	for _, ips := range assigned {
		total += len(ips)
	}
	if before.Counts["node1"] != total {
		t.Fatalf("node1 answers %d of %d addresses before the cut, want all: %v", before.Counts["node1"], total, before.Counts)
	}
	heal := insertInputRules(t, l, map[string][][]string{"node1": gossipBlocked("")})
	defer heal()
	cut := time.Now()
	after := watchSettle(t, l, assigned, cut, faultWatch, 30*time.Second)
	t.Logf("node1 cut from gossip: last problem %v after (%q), announcers %v", after.After.Round(time.Millisecond), after.Problem, after.Counts)
	if ips := claimedFromTheLiving(before.Answerers, after.Answered, "node2"); len(ips) > 0 {
		t.Errorf("node2, which does not watch node1, answered %v, which node1 answered before the gossip cut and still does", ips)
	}
	waitPartitionSaid(t, l, cut)
	heal()
	for _, n := range l.Nodes() {
		l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 5 }, "5")
	}
	healed := time.Now()
	s := watchSettle(t, l, assigned, healed, faultWatch, 30*time.Second)
	t.Logf("healed: last problem %v after (%q), announcers %v", s.After.Round(time.Millisecond), s.Problem, s.Counts)
	if s.Counts["node1"] != total {
		t.Errorf("node1 answers %d of %d addresses after the heal, want all: %v", s.Counts["node1"], total, s.Counts)
	}
}
