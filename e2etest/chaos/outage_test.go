package chaos_test

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
)

// TestAPIServerOutage freezes the kube-apiserver (SIGSTOP: connections stay
// open, nothing answers) and, while it is frozen, kills the speaker that
// answers the first Service three times in a row, restarting each before
// the next. After each death every address is answered by exactly one
// node and serves HTTP (asked from the client; ServiceL2Status cannot
// change meanwhile), and a speaker restarted during the outage answers
// for nothing: it has not read the cluster. Once the API server is back,
// everything re-syncs: every ServiceL2Status names the node that answers.
//
// BARELB_OUTAGE=5m holds the API server frozen for 5 minutes, checking
// all along. The Services use externalTrafficPolicy Local, with a backend on every
// node, so that HTTP goes to the answering node's own backend.
func TestAPIServerOutage(t *testing.T) {
	l, assigned := startChaosLab(t, 4, corev1.ServiceExternalTrafficPolicyLocal)
	checkOneAnswerer(t, l, assigned, 30*time.Second)
	if err := l.FreezeAPIServer(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := l.ThawAPIServer(); err != nil {
				t.Error(err)
			}
		}
	}
	defer thaw()
	first := netip.MustParseAddr(assigned["p0"][0])
	var restarted []string
	for round := 1; round <= 3; round++ {
		macs, err := l.WhoHas("client", first)
		if err != nil || len(macs) != 1 {
			t.Fatalf("round %d: who answers %s: %v, %v", round, first, macs, err)
		}
		node := l.NodeOfMAC(macs[0])
		killed := time.Now()
		if err := l.Kill(node, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
		}
		s := watchAnswers(t, l, assigned, killed, faultWatch, 30*time.Second)
		t.Logf("round %d, API frozen for %v: %s's speaker killed; settled %v after (last problem %q), answering %v",
			round, time.Since(frozen).Round(time.Second), node, s.After.Round(time.Millisecond), s.Problem, s.Counts)
		if s.Counts[node] != 0 {
			t.Errorf("round %d: %s, whose speaker is dead, answers %d addresses", round, node, s.Counts[node])
		}
		if err := l.Restart(node, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
		}
		restarted = append(restarted, node)
		// The others join it (they retry the peers they know every 10 s)
		// but do not elect it: it has not read the cluster.
		s = watchAnswers(t, l, assigned, time.Now(), 15*time.Second, 45*time.Second)
		for _, r := range restarted {
			if s.Counts[r] != 0 {
				t.Errorf("round %d: %s, whose speaker was restarted while the API server is away, answers %d addresses: %v", round, r, s.Counts[r], s.Counts)
			}
		}
	}
	// BARELB_OUTAGE=5m keeps it frozen that long, checking on.
	if hold := envDuration(t, "BARELB_OUTAGE", 0); hold > time.Since(frozen) {
		s := watchAnswers(t, l, assigned, time.Now(), hold-time.Since(frozen), hold)
		t.Logf("held frozen: last problem %v after (%q), answering %v", s.After.Round(time.Millisecond), s.Problem, s.Counts)
	}
	t.Logf("API server frozen for %v", time.Since(frozen).Round(time.Second))
	thaw()
	back := time.Now()
	s := watchSettle(t, l, assigned, back, faultWatch, 60*time.Second)
	t.Logf("API server back: statuses and answers agree %v after (last problem %q), answering %v", s.After.Round(time.Millisecond), s.Problem, s.Counts)
	for _, n := range l.Nodes() {
		l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 4 }, "4")
	}
}
