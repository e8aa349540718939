package chaos_test

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
)

// resyncWithin bounds how soon after the API server's return every
// ServiceL2Status names the node that answers.
const resyncWithin = 5 * time.Second

// TestAPIServerOutage freezes the kube-apiserver (SIGSTOP: connections stay
// open, nothing answers) and, while it is frozen, kills three speakers in
// a row, each an announcer that read the cluster before the outage,
// restarting each before the next. After each death every address is
// answered by exactly one node and serves HTTP (asked from the client;
// ServiceL2Status cannot change meanwhile); each restarted speaker learns
// the assignments from the others and answers for its addresses again,
// with no address unanswered meanwhile. Then the last speaker that read
// the cluster dies as well, and the speakers started during the outage
// answer for everything. Once the API server is back, everything
// re-syncs: within resyncWithin every ServiceL2Status names the node that
// answers.
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
	// Each round kills a speaker that read the cluster before the outage
	// and answers an address, then restarts it: it cannot read the
	// cluster, learns the assignments from the other speakers
	// (l2announcer.PeerTable) and takes its addresses back.
	var restarted []string
	for round := 1; round <= 3; round++ {
		r := checkAnswers(l, assigned, false)
		if r.Problem != "" {
			t.Fatalf("round %d: before the fault: %s", round, r.Problem)
		}
		counts := r.Counts
		node := ""
		for _, n := range l.Nodes() {
			if counts[n.Name] > 0 && !slices.Contains(restarted, n.Name) {
				node = n.Name
				break
			}
		}
		if node == "" {
			t.Fatalf("round %d: no speaker that read the cluster answers an address: %v", round, counts)
		}
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
		// The others join it (they retry the peers they know every 10 s),
		// it takes their table, and is elected again.
		back := time.Now()
		s = watchAnswers(t, l, assigned, back, 20*time.Second, 60*time.Second)
		t.Logf("round %d: %s's speaker restarted; settled %v after (last problem %q), answering %v; checks that found two answerers (the hand-back), per address: %v",
			round, node, s.After.Round(time.Millisecond), s.Problem, s.Counts, s.Doubled)
		if s.Counts[node] == 0 {
			t.Errorf("round %d: %s, whose speaker was restarted while the API server is away, answers nothing: it did not learn the assignments from the others (%v)",
				round, node, s.Counts)
		}
		// Its addresses come back make-before-break: whoever answered
		// for them meanwhile answers on until it hears it.
		if len(s.Unanswered) > 0 {
			t.Errorf("round %d: addresses unanswered after %s's speaker came back (first seen after): %v", round, node, s.Unanswered)
		}
	}
	// Now the speakers that read the cluster before the outage die too:
	// only speakers started during it remain, and they answer everything.
	var original []string
	for _, n := range l.Nodes() {
		if !slices.Contains(restarted, n.Name) {
			original = append(original, n.Name)
		}
	}
	killed := time.Now()
	for _, n := range original {
		if err := l.Kill(n, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
		}
	}
	s := watchAnswers(t, l, assigned, killed, faultWatch, 30*time.Second)
	t.Logf("every speaker that read the cluster is dead (%v): settled %v after (last problem %q), answering %v",
		original, s.After.Round(time.Millisecond), s.Problem, s.Counts)
	for _, n := range original {
		if err := l.Restart(n, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
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
	s = watchSettle(t, l, assigned, back, faultWatch, 60*time.Second)
	t.Logf("API server back: statuses and answers agree %v after (last problem %q), answering %v", s.After.Round(time.Millisecond), s.Problem, s.Counts)
	if s.After > resyncWithin {
		t.Errorf("the statuses agreed with the answers only %v after the API server came back, want within %v (last problem %q)", s.After.Round(time.Millisecond), resyncWithin, s.Problem)
	}
	for _, n := range l.Nodes() {
		l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 4 }, "4")
	}
}
