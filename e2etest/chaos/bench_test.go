package chaos_test

import (
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
)

// BenchmarkChaos draws random faults for as long as BARELB_CHAOS says
// (a Go duration: BARELB_CHAOS=1h) and reports, from the client's side:
//
//   - settled-double-answerers and settled-unanswered: addresses answered
//     by two nodes, or by none, once a fault had settled (target 0);
//     settled-other-problems: checks after settling that found something
//     else wrong (a status naming another node, a failed curl);
//   - settle-median-s/settle-worst-s per fault kind: when the last problem
//     was seen after the fault (watchSettle);
//   - changes-without-fault: announcers that changed during quiet
//     periods between faults (target 0);
//   - gossip-fault-moves: addresses a node answered during a gossip fault
//     (LAN up) that another node answered alone before it (target 0:
//     a take-over from a node that is up is probed first).
//
// Without BARELB_CHAOS it is skipped: make test runs TestGossipPartition
// and TestChurnUnderFailure, one fault each.
func BenchmarkChaos(b *testing.B) {
	budget, err := time.ParseDuration(os.Getenv("BARELB_CHAOS"))
	if err != nil || budget <= 0 {
		b.Skip("set BARELB_CHAOS to a duration (BARELB_CHAOS=10m) to draw random faults for that long")
	}
	// externalTrafficPolicy Local: HTTP is served by the answering
	// node's own backend, so that a node cut off the LAN (whose pods
	// nothing here marks not ready) gets no share of the requests.
	l, assigned := startChaosLab(b, 4, corev1.ServiceExternalTrafficPolicyLocal)
	services := sortedKeys(assigned)
	before := checkOneAnswerer(b, l, assigned, 30*time.Second).Counts
	kinds := faultKinds(l)
	settle := map[string][]time.Duration{}
	var doubles, unanswered, otherProblems, changes, faults, moved int
	deadline := time.Now().Add(budget)
	for i := 0; time.Now().Before(deadline); i++ {
		// A quiet spell: nothing may move.
		statuses := announcersByService(b, l, services)
		time.Sleep(5 * time.Second)
		if now := announcersByService(b, l, services); !maps.Equal(statuses, now) {
			changes++
			b.Logf("announcers changed without a fault: %v, then %v", statuses, now)
		}
		k := kinds[rand.IntN(len(kinds))]
		pre := checkRound(l, assigned)
		heal := k.inject(b, before)
		start := time.Now()
		s := watchSettle(b, l, assigned, start, faultWatch, 60*time.Second)
		if k.gossip && pre.Problem == "" {
			for _, n := range l.Nodes() {
				if ips := claimedFromTheLiving(pre.Answerers, s.Answered, n.Name); len(ips) > 0 {
					moved += len(ips)
					b.Logf("%s: %s answered %v, answered by a live node before the gossip fault", k.name, n.Name, ips)
				}
			}
		}
		settle[k.name] = append(settle[k.name], s.After)
		faults++
		if r := checkRound(l, assigned); r.Problem != "" {
			d, u := answererFaults(r, assigned)
			doubles += d
			unanswered += u
			if d+u == 0 {
				otherProblems++
			}
			b.Logf("%s: after settling: %s", k.name, r.Problem)
		}
		heal()
		before = watchSettle(b, l, assigned, time.Now(), faultWatch, 60*time.Second).Counts
		b.Logf("fault %d (%s): settled %v after", i, k.name, s.After.Round(time.Millisecond))
	}
	b.ReportMetric(float64(faults), "faults")
	b.ReportMetric(float64(doubles), "settled-double-answerers")
	b.ReportMetric(float64(unanswered), "settled-unanswered")
	b.ReportMetric(float64(otherProblems), "settled-other-problems")
	b.ReportMetric(float64(changes), "changes-without-fault")
	b.ReportMetric(float64(moved), "gossip-fault-moves")
	for _, name := range sortedKeys(settle) {
		ds := settle[name]
		slices.Sort(ds)
		b.ReportMetric(ds[len(ds)/2].Seconds(), "settle-median-s-"+name)
		b.ReportMetric(ds[len(ds)-1].Seconds(), "settle-worst-s-"+name)
	}
}

// answererFaults counts the addresses of r answered by two nodes or more,
// and by none.
func answererFaults(r round, assigned map[string][]string) (doubles, unanswered int) {
	for _, ips := range assigned {
		for _, ip := range ips {
			switch n := len(r.Answerers[ip]); {
			case n == 0:
				unanswered++
			case n > 1:
				doubles++
			}
		}
	}
	return doubles, unanswered
}

// faultKind is a fault the benchmark can draw: inject breaks something
// (before are the addresses each node answers for) and returns how to
// heal it.
type faultKind struct {
	name string
	// gossip: the fault cuts memberlist only; every node lives on the
	// LAN, so no address may move.
	gossip bool
	inject func(tb testing.TB, before map[string]int) (heal func())
}

func faultKinds(l *lab.Lab) []faultKind {
	nodes := l.Nodes()
	return []faultKind{
		{"cut-busiest", true, func(tb testing.TB, before map[string]int) func() {
			return insertInputRules(tb, l, map[string][][]string{busiest(before): gossipBlocked("")})
		}},
		{"cut-random", true, func(tb testing.TB, before map[string]int) func() {
			return insertInputRules(tb, l, map[string][][]string{nodes[rand.IntN(len(nodes))].Name: gossipBlocked("")})
		}},
		{"split-2-2", true, func(tb testing.TB, before map[string]int) func() {
			order := rand.Perm(len(nodes))
			rules := map[string][][]string{}
			for i, a := range order {
				for j, b := range order {
					if (i < len(order)/2) != (j < len(order)/2) {
						rules[nodes[a].Name] = append(rules[nodes[a].Name], gossipBlocked(nodes[b].Addr(lab.SegmentLAN, 4).String())...)
					}
				}
			}
			return insertInputRules(tb, l, rules)
		}},
		{"one-way", true, func(tb testing.TB, before map[string]int) func() {
			node := nodes[rand.IntN(len(nodes))].Name
			return insertInputRules(tb, l, map[string][][]string{node: {{"-p", "udp", "--dport", "7946", "-j", "DROP"}, {"-p", "tcp", "--dport", "7946", "-j", "DROP"}}})
		}},
		{"lan-cut-busiest", false, func(tb testing.TB, before map[string]int) func() {
			return l.CutFromLAN(tb, busiest(before))
		}},
		{"speaker-kill", false, func(tb testing.TB, before map[string]int) func() {
			node := busiest(before)
			if err := l.Kill(node, lab.ComponentSpeaker); err != nil {
				tb.Fatal(err)
			}
			return func() {
				if err := l.Restart(node, lab.ComponentSpeaker); err != nil {
					tb.Fatal(err)
				}
			}
		}},
	}
}
