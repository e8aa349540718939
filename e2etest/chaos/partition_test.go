package chaos_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

// TestGossipPartition cuts memberlist between nodes while the LAN stays
// up, the failure users meet after a firewall reload or a security-group
// change, and checks from the client's side that every address is
// answered by exactly one node, the one its ServiceL2Status names, and
// reachable, once the fault has settled; and again once it heals. Each
// side of a cut elects among the speakers it sees, so without
// arbitration on the wire both sides answer for the addresses of the
// other.
func TestGossipPartition(t *testing.T) {
	l, assigned := startChaosLab(t, 4)
	services := sortedKeys(assigned)
	before := checkOneAnswerer(t, l, assigned, 30*time.Second)

	faults := []struct {
		name string
		// rules are iptables rules per node (added to INPUT).
		rules func(announcers map[string]int) map[string][][]string
	}{
		{"the busiest announcer cut from gossip", func(announcers map[string]int) map[string][][]string {
			return map[string][][]string{busiest(announcers): gossipBlocked("")}
		}},
		{"a 2|2 split", func(map[string]int) map[string][][]string {
			nodes := l.Nodes()
			out := map[string][][]string{}
			for i, n := range nodes {
				for j, peer := range nodes {
					if (i < 2) != (j < 2) {
						out[n.Name] = append(out[n.Name], gossipBlocked(peer.Addr(lab.SegmentLAN, 4).String())...)
					}
				}
			}
			return out
		}},
		{"one node cut one way (it hears nothing)", func(announcers map[string]int) map[string][][]string {
			return map[string][][]string{leastBusyAnnouncer(announcers): {{"-p", "udp", "--dport", "7946", "-j", "DROP"}, {"-p", "tcp", "--dport", "7946", "-j", "DROP"}}}
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			rules := f.rules(before.Counts)
			heal := insertInputRules(t, l, rules)
			defer heal() // also when a check fails: the next fault starts from a whole cluster
			cut := time.Now()
			after := watchSettle(t, l, assigned, cut, faultWatch, 30*time.Second)
			t.Logf("cut %v: settled %v after the cut (last problem: %q), announcers %v", nodesOf(rules), after.After.Round(time.Millisecond), after.Problem, after.Counts)
			// Every node lives on the LAN: nothing may move, neither
			// to the side cut off (its view is suspect) nor from it
			// (its kernel still answers).
			for _, n := range l.Nodes() {
				for _, ip := range claimedFromTheLiving(before.Answerers, after.Answered, n.Name) {
					t.Errorf("%s answered %s during the gossip cut, which %v answered before and still does", n.Name, ip, before.Answerers[ip])
				}
			}
			waitPartitionSaid(t, l, cut)
			heal()
			healedAt := time.Now()
			healing := watchSettle(t, l, assigned, healedAt, faultWatch, 30*time.Second)
			t.Logf("healed: settled %v after (last problem: %q), announcers %v", healing.After.Round(time.Millisecond), healing.Problem, healing.Counts)
			for _, n := range l.Nodes() {
				l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 4 }, "4")
			}
			before = checkOneAnswerer(t, l, assigned, 15*time.Second)
		})
	}

	t.Run("one node with a wrong memberlist secret", func(t *testing.T) {
		node := busiest(before.Counts)
		l.SetMemberlistKey(node, "not-the-cluster-secret")
		restart := func() { t.Helper(); restartSpeaker(t, l, node) }
		defer func() {
			l.SetMemberlistKey(node, "")
			restart()
			for _, n := range l.Nodes() {
				l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 4 }, "4")
			}
			before = checkOneAnswerer(t, l, assigned, 15*time.Second)
		}()
		started := time.Now()
		restart()
		after := watchSettle(t, l, assigned, started, faultWatch, 30*time.Second).Counts
		t.Logf("%s restarted with a wrong secret: announcers %v", node, after)
		// It stands aside for the others' memberlist: it announces nothing
		// (checked a few seconds on, not only at the first look).
		time.Sleep(3 * time.Second)
		if after = checkOneAnswerer(t, l, assigned, 5*time.Second).Counts; after[node] != 0 {
			t.Errorf("%s, outside the others' memberlist, announces %d addresses: %v", node, after[node], after)
		}
		if log := l.SpeakerLog(t, node); !strings.Contains(log, "cannot join the other speakers' memberlist") {
			t.Errorf("%s's log does not say that it cannot join the others' memberlist", node)
		}
	})

	t.Run("memberlist secret replaced, one speaker after another", func(t *testing.T) {
		// Old and new secrets make two memberlists while the rollout
		// runs: the speakers must keep one answerer per address all
		// along, through Leases and arbitration on the wire. (The
		// speakers keep the new secret for the next subtest.)
		for _, n := range l.Nodes() {
			l.SetMemberlistKey(n.Name, "the-replaced-secret")
			restarted := time.Now()
			restartSpeaker(t, l, n.Name)
			s := watchSettle(t, l, assigned, restarted, faultWatch, 60*time.Second)
			t.Logf("%s restarted with the new secret: last problem %v after (%q), announcers %v", n.Name, s.After.Round(time.Millisecond), s.Problem, s.Counts)
		}
		for _, n := range l.Nodes() {
			l.WaitSpeakerMetric(t, n.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 4 }, "4")
		}
		before = checkOneAnswerer(t, l, assigned, 15*time.Second)
	})

	t.Run("memberlist secret rotated in three steps: the speakers never split", func(t *testing.T) {
		// The rotation the README gives: the new secret accepted by
		// every speaker, then used with the old one accepted, then
		// alone; a rolling restart each. Speakers one step apart always
		// understand each other, so memberlist stays whole and nothing
		// is contested.
		const old, next = "the-replaced-secret", "the-rotated-secret"
		said := partitionEventCounts(t, l)
		// A speaker's log spans its restarts: the earlier subtests'
		// lines are counted out.
		const cannotJoin = "cannot join the other speakers' memberlist"
		cannotJoinBefore := map[string]int{}
		for _, n := range l.Nodes() {
			cannotJoinBefore[n.Name] = strings.Count(l.SpeakerLog(t, n.Name), cannotJoin)
		}
		for _, step := range []struct {
			name  string
			key   string
			extra []string
		}{
			{"the new secret accepted", old, []string{next}},
			{"the new secret used, the old one accepted", next, []string{old}},
			{"the old secret dropped", next, nil},
		} {
			for _, n := range l.Nodes() {
				l.SetMemberlistKey(n.Name, step.key, step.extra...)
				restarted := time.Now()
				restartSpeaker(t, l, n.Name)
				for _, m := range l.Nodes() {
					l.WaitSpeakerMetric(t, m.Name, "barelb_speaker_memberlist_members", func(v float64) bool { return v == 4 }, "4")
				}
				s := watchSettle(t, l, assigned, restarted, faultWatch, 60*time.Second)
				t.Logf("%s: %s restarted: last problem %v after (%q), announcers %v", step.name, n.Name, s.After.Round(time.Millisecond), s.Problem, s.Counts)
			}
		}
		for name, n := range partitionEventCounts(t, l) {
			if n > said[name] {
				t.Errorf("the speakers split during the rotation: %s", name)
			}
		}
		for _, n := range l.Nodes() {
			if strings.Count(l.SpeakerLog(t, n.Name), cannotJoin) > cannotJoinBefore[n.Name] {
				t.Errorf("%s could not join the others' memberlist during the rotation", n.Name)
			}
		}
		before = checkOneAnswerer(t, l, assigned, 15*time.Second)
	})

	t.Run("TCP of the memberlist port blocked, UDP open: nothing moves", func(t *testing.T) {
		node := busiest(before.Counts)
		defer insertInputRules(t, l, map[string][][]string{node: {{"-p", "tcp", "--dport", "7946", "-j", "DROP"}}})()
		statuses := announcersByService(t, l, services)
		time.Sleep(envDuration(t, "BARELB_TCP_BLOCK", 20*time.Second))
		if now := announcersByService(t, l, services); fmt.Sprint(now) != fmt.Sprint(statuses) {
			t.Errorf("announcers changed with TCP 7946 blocked on %s: %v, then %v", node, statuses, now)
		}
		checkOneAnswerer(t, l, assigned, 5*time.Second)
	})
}

// claimedFromTheLiving are the addresses (sorted) that node was seen
// answering in after although before another node answered them alone.
func claimedFromTheLiving(before, after map[string][]string, node string) []string {
	var out []string
	for ip, nodes := range after {
		if slices.Contains(nodes, node) && len(before[ip]) == 1 && before[ip][0] != node {
			out = append(out, ip)
		}
	}
	sort.Strings(out)
	return out
}

// envDuration is the duration the environment variable name gives (a Go
// duration: 10m), or def: long runs of a check sit behind a variable, a
// short one runs in make test.
func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		tb.Fatalf("%s=%q: want a duration such as 10m", name, v)
	}
	return d
}

// gossipBlocked are the INPUT rules that drop memberlist's packets (TCP
// and UDP, either direction) from peer, or from everyone when peer is
// empty.
func gossipBlocked(peer string) [][]string {
	var out [][]string
	for _, proto := range []string{"udp", "tcp"} {
		for _, port := range []string{"--dport", "--sport"} {
			r := []string{"-p", proto, port, "7946", "-j", "DROP"}
			if peer != "" {
				r = append([]string{"-s", peer}, r...)
			}
			out = append(out, r)
		}
	}
	return out
}

func execOn(tb testing.TB, l *lab.Lab, node string, cmd ...string) {
	tb.Helper()
	if out, err := l.Exec(context.Background(), node, cmd...); err != nil {
		tb.Fatalf("%v on %s: %v: %s", cmd, node, err, out)
	}
}

// insertInputRules inserts iptables rules into each node's INPUT chain
// and returns heal, which deletes them; heal may be called again (a
// deferred heal after an explicit one) and does nothing then.
func insertInputRules(tb testing.TB, l *lab.Lab, rules map[string][][]string) (heal func()) {
	tb.Helper()
	for node, rs := range rules {
		for _, r := range rs {
			execOn(tb, l, node, append([]string{"iptables", "-w", "-I", "INPUT"}, r...)...)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for node, rs := range rules {
				for _, r := range rs {
					execOn(tb, l, node, append([]string{"iptables", "-w", "-D", "INPUT"}, r...)...)
				}
			}
		})
	}
}

func nodesOf(m map[string][][]string) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// busiest and leastBusy name the node announcing the most and the fewest
// addresses (by name among equals).
func busiest(announcers map[string]int) string {
	best, n := "", -1
	for _, node := range sortedKeys(announcers) {
		if announcers[node] > n {
			best, n = node, announcers[node]
		}
	}
	return best
}

func leastBusy(announcers map[string]int) string {
	best, n := "", 1<<30
	for _, node := range sortedKeys(announcers) {
		if announcers[node] < n {
			best, n = node, announcers[node]
		}
	}
	return best
}

// leastBusyAnnouncer names the node announcing the fewest addresses but
// at least one (by name among equals; leastBusy when none announces).
func leastBusyAnnouncer(announcers map[string]int) string {
	some := map[string]int{}
	for node, n := range announcers {
		if n > 0 {
			some[node] = n
		}
	}
	if len(some) == 0 {
		return leastBusy(announcers)
	}
	return leastBusy(some)
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func announcersByService(tb testing.TB, l *lab.Lab, services []string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, svc := range services {
		node, err := l.L2Announcer("default", svc)
		if err != nil {
			tb.Fatal(err)
		}
		out[svc] = node
	}
	return out
}

// faultWatch is how long checks run after a fault at least: the
// partition shows (memberlist declares members gone) within a few
// seconds.
const faultWatch = 8 * time.Second

// whoHasWait is how long a check waits for answers: a node on the lab's
// LAN answers within milliseconds, and a late second answerer is caught
// by the next round.
const whoHasWait = 300 * time.Millisecond

// checkOneAnswerer waits up to timeout until, asked from the client, each
// address of each Service is answered by exactly one MAC, that of the node
// its ServiceL2Status names, and the address serves HTTP; it fails the
// test with the last disagreement otherwise. It returns the check that
// found nothing wrong.
func checkOneAnswerer(tb testing.TB, l *lab.Lab, assigned map[string][]string, timeout time.Duration) round {
	tb.Helper()
	var r round
	lab.Eventually(tb, timeout, "one answerer per address, the node of its ServiceL2Status, reachable", func() (bool, string) {
		r = checkRound(l, assigned)
		return r.Problem == "", r.Problem
	})
	return r
}

// round is what one check of every address found.
type round struct {
	// Counts are the addresses each node answers for (every node of the
	// lab listed), counting the addresses with one answerer.
	Counts map[string]int
	// Answerers are the nodes that answered each address.
	Answerers map[string][]string
	// Problem is what was wrong, if anything.
	Problem string
}

// settled is what watchSettle saw.
type settled struct {
	// After is when the last check that found a problem ended, after
	// the fault (0: none did).
	After time.Duration
	// Problem is what that check found.
	Problem string
	// Counts are the addresses each node answers for, at the end.
	Counts map[string]int
	// Answered are the nodes seen answering each address, at any check
	// of the watch.
	Answered map[string][]string
	// Unanswered are the addresses that no node answered at some check
	// of the watch, each with when that check ended (the first time).
	Unanswered map[string]time.Duration
	// Doubled counts, per address, the checks of the watch that found
	// it answered by more than one node.
	Doubled map[string]int
}

// quietFor is how long the checks must find nothing wrong, in a row,
// before a fault counts as settled.
const quietFor = 3 * time.Second

// watchSettle checks (checkRound) back to back from the moment a fault
// was injected, for at least watch and until the checks have found nothing
// wrong for quietFor, and says when the last problem was seen. It fails
// the test when that does not happen within timeout.
func watchSettle(tb testing.TB, l *lab.Lab, assigned map[string][]string, since time.Time, watch, timeout time.Duration) settled {
	tb.Helper()
	return watchChecks(tb, since, watch, timeout, func() round { return checkAnswers(l, assigned, true) })
}

// watchAnswers is watchSettle without ServiceL2Status, which cannot
// change while the API server is away: one answerer per address, serving.
func watchAnswers(tb testing.TB, l *lab.Lab, assigned map[string][]string, since time.Time, watch, timeout time.Duration) settled {
	tb.Helper()
	return watchChecks(tb, since, watch, timeout, func() round { return checkAnswers(l, assigned, false) })
}

func watchChecks(tb testing.TB, since time.Time, watch, timeout time.Duration, check func() round) settled {
	tb.Helper()
	out := settled{Answered: map[string][]string{}}
	quietSince := time.Now()
	for {
		r := check()
		now := time.Now()
		out.Counts = r.Counts
		for ip, nodes := range r.Answerers {
			if len(nodes) > 1 {
				if out.Doubled == nil {
					out.Doubled = map[string]int{}
				}
				out.Doubled[ip]++
			}
			if len(nodes) == 0 {
				if out.Unanswered == nil {
					out.Unanswered = map[string]time.Duration{}
				}
				if _, seen := out.Unanswered[ip]; !seen {
					out.Unanswered[ip] = now.Sub(since).Round(time.Millisecond)
				}
			}
			for _, n := range nodes {
				if !slices.Contains(out.Answered[ip], n) {
					out.Answered[ip] = append(out.Answered[ip], n)
				}
			}
		}
		if r.Problem != "" {
			out.After, out.Problem, quietSince = now.Sub(since), r.Problem, now
		}
		switch {
		case now.Sub(since) >= watch && now.Sub(quietSince) >= quietFor:
			return out
		case now.Sub(since) > timeout:
			tb.Fatalf("not settled %v after the fault: %s", timeout, out.Problem)
		}
	}
}

// checkRound asks the LAN from the client who answers each address of
// each Service, compares with its ServiceL2Status and curls it; it
// returns how many addresses each node answers for and, when anything is
// wrong, what.
func checkRound(l *lab.Lab, assigned map[string][]string) round {
	return checkAnswers(l, assigned, true)
}

// checkAnswers is checkRound, comparing with ServiceL2Status only with
// withStatus (not while the API server is away); without it, counts are
// by the MAC that answers.
func checkAnswers(l *lab.Lab, assigned map[string][]string, withStatus bool) round {
	counts := map[string]int{}
	for _, n := range l.Nodes() {
		counts[n.Name] = 0
	}
	total := 0
	for _, ips := range assigned {
		total += len(ips)
	}
	problems := make(chan string, total)
	answeredBy := make(chan string, total)
	var mu sync.Mutex
	byIP := make(map[string][]string, total)
	var wg sync.WaitGroup
	for svc, ips := range assigned {
		node := "(not read)"
		if withStatus {
			var err error
			if node, err = l.L2Announcer("default", svc); err != nil || node == "" {
				return round{Counts: counts, Problem: fmt.Sprintf("ServiceL2Status of %s: node %q, %v", svc, node, err)}
			}
		}
		for _, ip := range ips {
			wg.Add(1)
			go func() {
				defer wg.Done()
				macs, err := l.WhoHasWithin("client", netip.MustParseAddr(ip), whoHasWait)
				var answerers []string
				var nodes []string
				for _, mac := range macs {
					answerers = append(answerers, l.NodeOfMAC(mac)+"("+mac+")")
					nodes = append(nodes, l.NodeOfMAC(mac))
				}
				mu.Lock()
				byIP[ip] = nodes
				mu.Unlock()
				if len(macs) == 1 {
					answeredBy <- l.NodeOfMAC(macs[0])
				}
				switch {
				case err != nil:
					problems <- ip + ": " + err.Error()
				case len(macs) != 1:
					problems <- fmt.Sprintf("%s: %d answerers %v (status: %s)", ip, len(macs), answerers, node)
				case withStatus && l.NodeOfMAC(macs[0]) != node:
					problems <- fmt.Sprintf("%s: answered by %v, status names %s", ip, answerers, node)
				default:
					if _, err := l.Get("client", lab.URL(ip), 2*time.Second); err != nil {
						problems <- ip + ": curl: " + err.Error()
					}
				}
			}()
		}
	}
	wg.Wait()
	close(problems)
	close(answeredBy)
	for node := range answeredBy {
		counts[node]++
	}
	var all []string
	for p := range problems {
		all = append(all, p)
	}
	sort.Strings(all)
	return round{Counts: counts, Answerers: byIP, Problem: strings.Join(all, "; ")}
}

// restartSpeaker restarts node's speaker and waits until it is ready.
func restartSpeaker(tb testing.TB, l *lab.Lab, node string) {
	tb.Helper()
	if err := l.Restart(node, lab.ComponentSpeaker); err != nil {
		tb.Fatal(err)
	}
	if err := l.WaitReady(context.Background(), node, lab.ComponentSpeaker); err != nil {
		tb.Fatal(err)
	}
}

// partitionEventCounts returns the SpeakerPartition Warning Events on
// Nodes, as "node: message", with their counts: one told again counts
// up (an Event's time is kept to the second only).
func partitionEventCounts(tb testing.TB, l *lab.Lab) map[string]int32 {
	tb.Helper()
	out := map[string]int32{}
	for _, e := range partitionEvents(tb, l) {
		out[e.InvolvedObject.Name+": "+e.Message] += max(e.Count, 1)
	}
	return out
}

// partitionEventsSince returns the messages of the SpeakerPartition
// Warning Events on Nodes since the given time.
func partitionEventsSince(tb testing.TB, l *lab.Lab, since time.Time) []string {
	tb.Helper()
	var out []string
	for _, e := range partitionEvents(tb, l) {
		if !e.LastTimestamp.Time.Before(since.Add(-time.Second)) {
			out = append(out, e.InvolvedObject.Name+": "+e.Message)
		}
	}
	return out
}

// partitionEvents are the SpeakerPartition Warning Events on Nodes.
func partitionEvents(tb testing.TB, l *lab.Lab) []corev1.Event {
	tb.Helper()
	var events corev1.EventList
	if err := l.Client().List(context.Background(), &events); err != nil {
		tb.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range events.Items {
		if e.Reason == l2announcer.ReasonSpeakerPartition && e.InvolvedObject.Kind == "Node" && e.Type == corev1.EventTypeWarning {
			out = append(out, e)
		}
	}
	return out
}

// waitPartitionSaid waits for the Warning Event, sent since the given
// time, of a speaker whose addresses a speaker memberlist has lost
// contests (on either side: the one that hears the other first says so).
func waitPartitionSaid(tb testing.TB, l *lab.Lab, since time.Time) {
	tb.Helper()
	lab.Eventually(tb, 15*time.Second, "a "+l2announcer.ReasonSpeakerPartition+" Event on a Node", func() (bool, string) {
		said := partitionEventsSince(tb, l, since)
		return len(said) > 0, fmt.Sprint(said)
	})
}
