package chaos_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestTwoNodes is the cluster a majority rule cannot serve: with two
// speakers, each side of a cut sees one of two. A cut in the gossip (LAN
// up) must move nothing, since each speaker hears the other answer before
// it takes an address over; a node cut off the LAN must still fail over
// at once, since its kernel falls silent, with no quorum to wait for.
// The Services use externalTrafficPolicy Local, so that HTTP is served by
// the answering node's own backend: the cut node's endpoints stay (nothing
// here marks its pods not ready), and kube-proxy would send some requests
// of a Cluster Service there.
func TestTwoNodes(t *testing.T) {
	l, assigned := startChaosLab(t, 2, corev1.ServiceExternalTrafficPolicyLocal)
	before := checkOneAnswerer(t, l, assigned, 30*time.Second)

	t.Run("gossip cut, LAN up: nothing moves", func(t *testing.T) {
		node := busiest(before.Counts)
		heal := insertInputRules(t, l, map[string][][]string{node: gossipBlocked("")})
		defer heal()
		cut := time.Now()
		after := watchSettle(t, l, assigned, cut, faultWatch, 30*time.Second)
		t.Logf("%s cut from gossip: last problem %v after (%q), announcers %v", node, after.After.Round(time.Millisecond), after.Problem, after.Counts)
		for _, n := range l.Nodes() {
			for _, ip := range claimedFromTheLiving(before.Answerers, after.Answered, n.Name) {
				t.Errorf("%s answered %s, which %v answered before the gossip cut and still does", n.Name, ip, before.Answerers[ip])
			}
		}
		waitPartitionSaid(t, l, cut)
		heal()
		for _, n := range l.Nodes() {
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 2 }, "2")
		}
		before = checkOneAnswerer(t, l, assigned, 15*time.Second)
	})

	t.Run("the announcer cut off the LAN: the other takes over", func(t *testing.T) {
		node := busiest(before.Counts)
		restore := l.CutFromLAN(t, node)
		cut := time.Now()
		after := watchSettle(t, l, assigned, cut, faultWatch, 30*time.Second)
		// Settled means: every address answered by the other node alone,
		// the one its ServiceL2Status names, and reachable.
		t.Logf("%s cut off the LAN: settled %v after (last problem %q), announcers %v", node, after.After.Round(time.Millisecond), after.Problem, after.Counts)
		restore()
		for _, n := range l.Nodes() {
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 2 }, "2")
		}
		healed := watchSettle(t, l, assigned, time.Now(), faultWatch, 30*time.Second)
		t.Logf("%s back on the LAN: settled %v after (last problem %q), announcers %v", node, healed.After.Round(time.Millisecond), healed.Problem, healed.Counts)
	})
}
