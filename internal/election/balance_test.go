package election

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// balanceCase is a random cluster: one pool, one advertisement for every
// node, n nodes of which those in alive are alive, k single-address
// Services.
type balanceCase struct {
	nodes    []L2Node
	services []L2Service
}

func randomBalanceCase(rng *rand.Rand) balanceCase {
	var c balanceCase
	n := 1 + rng.Intn(12)
	for i := range n {
		c.nodes = append(c.nodes, L2Node{Name: fmt.Sprintf("node-%d", i), Alive: rng.Intn(4) > 0})
	}
	c.nodes[rng.Intn(n)].Alive = true
	k := 1 + rng.Intn(300)
	base := rng.Intn(1 << 16)
	for i := range k {
		ip := netip.AddrFrom4([4]byte{198, 18, byte((base + i) >> 8), byte(base + i)})
		c.services = append(c.services, L2Service{Key: fmt.Sprintf("ns/svc-%d", i), Pool: "lan", Addresses: []netip.Addr{ip}})
	}
	return c
}

func (c balanceCase) plan(t testing.TB) []L2Announcement {
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	advs := []*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{})}
	return PlanL2(c.services, pools, advs, c.nodes)
}

func (c balanceCase) with(alive map[string]bool) balanceCase {
	out := balanceCase{services: c.services}
	for _, n := range c.nodes {
		n.Alive = alive[n.Name]
		out.nodes = append(out.nodes, n)
	}
	return out
}

func (c balanceCase) alive() map[string]bool {
	m := map[string]bool{}
	for _, n := range c.nodes {
		if n.Alive {
			m[n.Name] = true
		}
	}
	return m
}

func nodesOf(plan []L2Announcement) map[netip.Addr]L2Announcement {
	m := make(map[netip.Addr]L2Announcement, len(plan))
	for _, a := range plan {
		m[a.Address] = a
	}
	return m
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// No node announces more than ⌈addresses/live candidates⌉+1 addresses
// of one advertisement, whoever is alive.
func TestBalancedPlacementBound(t *testing.T) {
	rng := rand.New(rand.NewSource(17))
	for round := range 300 {
		c := randomBalanceCase(rng)
		plan := c.plan(t)
		if len(plan) != len(c.services) {
			t.Fatalf("round %d: %d announcements for %d addresses", round, len(plan), len(c.services))
		}
		load := map[string]int{}
		for _, a := range plan {
			if !c.alive()[a.Node] {
				t.Fatalf("round %d: %s on %s, which is not alive", round, a.Address, a.Node)
			}
			load[a.Node]++
		}
		bound := ceilDiv(len(c.services), len(c.alive())) + 1
		for node, l := range load {
			if l > bound {
				t.Fatalf("round %d: %s announces %d of %d addresses; %d nodes alive, bound %d", round, node, l, len(c.services), len(c.alive()), bound)
			}
		}
	}
}

// A node's death moves only the addresses it announced, and those that
// had already left their dead owners; from a cluster whose nodes are all
// alive, only its own. Its return moves only addresses to it, at most
// its share.
func TestBalancedPlacementMovesLittle(t *testing.T) {
	rng := rand.New(rand.NewSource(18))
	for round := range 300 {
		c := randomBalanceCase(rng)
		if rng.Intn(3) == 0 {
			all := map[string]bool{}
			for _, n := range c.nodes {
				all[n.Name] = true
			}
			c = c.with(all)
		}
		alive := c.alive()
		var names []string
		for _, n := range c.nodes {
			if alive[n.Name] {
				names = append(names, n.Name)
			}
		}
		if len(names) < 2 {
			continue
		}
		dying := names[rng.Intn(len(names))]
		before := c.plan(t)
		after := map[string]bool{}
		for n := range alive {
			after[n] = n != dying
		}
		afterPlan := nodesOf(c.with(after).plan(t))
		allAlive := len(alive) == len(c.nodes)
		for _, a := range before {
			now := afterPlan[a.Address]
			if now.Node == a.Node {
				continue
			}
			orphan := a.Owner != a.Node
			if a.Node != dying && (allAlive || !orphan) {
				t.Fatalf("round %d: %s moved from %s to %s when %s died (owner %s, all alive before: %v)", round, a.Address, a.Node, now.Node, dying, a.Owner, allAlive)
			}
		}
		if !allAlive {
			continue
		}
		// And back: the return of the dead node.
		moved := 0
		for _, a := range before {
			was := afterPlan[a.Address]
			if was.Node == a.Node {
				continue
			}
			if a.Node != dying {
				t.Fatalf("round %d: %s moved from %s to %s when %s came back", round, a.Address, was.Node, a.Node, dying)
			}
			moved++
		}
		if share := ceilDiv(len(c.services), len(c.nodes)) + 1; moved > share {
			t.Fatalf("round %d: %s took back %d addresses, more than its share %d", round, dying, moved, share)
		}
	}
}

// Every speaker reaches the same plan whatever order it lists nodes and
// Services in.
func TestBalancedPlacementIgnoresOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(19))
	for round := range 100 {
		c := randomBalanceCase(rng)
		want := c.plan(t)
		rng.Shuffle(len(c.nodes), func(i, j int) { c.nodes[i], c.nodes[j] = c.nodes[j], c.nodes[i] })
		rng.Shuffle(len(c.services), func(i, j int) { c.services[i], c.services[j] = c.services[j], c.services[i] })
		if diff := cmp.Diff(want, c.plan(t), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Fatalf("round %d: order changed the plan (-want +got):\n%s", round, diff)
		}
	}
}

// A partition between live nodes: each side elects among its own
// members and both answer for some addresses. The contest between the
// two answerers (ArbitrateOwned, from what each side's plan says) is
// agreed by both and leaves each address where the healed cluster's plan
// puts it, although the plan balances.
func TestBalancedPlacementPartitionSettlesLikeThePlan(t *testing.T) {
	rng := rand.New(rand.NewSource(20))
	for round := range 200 {
		c := randomBalanceCase(rng)
		all := map[string]bool{}
		side := map[string]bool{}
		for _, n := range c.nodes {
			all[n.Name] = true
			side[n.Name] = rng.Intn(2) == 0
		}
		c = c.with(all)
		healed := nodesOf(c.plan(t))
		other := map[string]bool{}
		for n := range all {
			other[n] = !side[n]
		}
		one, two := nodesOf(c.with(side).plan(t)), nodesOf(c.with(other).plan(t))
		for ip, a := range one {
			b, ok := two[ip]
			if !ok || a.Node == b.Node {
				continue
			}
			if a.Owner != b.Owner {
				t.Fatalf("round %d: %s: the sides name different owners %q and %q", round, ip, a.Owner, b.Owner)
			}
			x, y := ArbitrateOwned(a.Key.String(), a.Owner, a.Node, b.Node), ArbitrateOwned(b.Key.String(), b.Owner, b.Node, a.Node)
			if x != y {
				t.Fatalf("round %d: %s: the sides disagree: %s and %s", round, ip, x, y)
			}
			if x != healed[ip].Node {
				t.Fatalf("round %d: %s: %s keeps it against %s, the healed plan puts it on %s", round, ip, x, map[bool]string{true: b.Node, false: a.Node}[x == a.Node], healed[ip].Node)
			}
		}
	}
}

// Preferences come first: balancing happens among the most preferred
// live nodes only.
func TestBalancedPlacementKeepsPreferences(t *testing.T) {
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	advs := []*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{
		PreferredNodeSelectors: []barelbv1beta1.WeightedNodeSelector{{Weight: 50, Preference: sel("edge", "true")}},
	})}
	nodes := []L2Node{
		{Name: "n1", Alive: true, Labels: labels.Set{"edge": "true"}},
		{Name: "n2", Alive: true, Labels: labels.Set{"edge": "true"}},
		{Name: "n3", Alive: true},
	}
	var services []L2Service
	for i := range 100 {
		services = append(services, L2Service{Key: fmt.Sprintf("ns/s%d", i), Pool: "lan", Addresses: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})}})
	}
	load := map[string]int{}
	for _, a := range PlanL2(services, pools, advs, nodes) {
		load[a.Node]++
	}
	if diff := cmp.Diff(map[string]int{"n1": 50, "n2": 50}, load, cmp.Comparer(func(a, b int) bool { return a-b <= 1 && b-a <= 1 })); diff != "" {
		t.Errorf("load (-want +got):\n%s", diff)
	}
	nodes[0].Alive = false
	load = map[string]int{}
	for _, a := range PlanL2(services, pools, advs, nodes) {
		load[a.Node]++
	}
	if diff := cmp.Diff(map[string]int{"n2": 100}, load); diff != "" {
		t.Errorf("with n1 dead, load (-want +got):\n%s", diff)
	}
}

// BenchmarkBalance prints the largest and the mean number of addresses
// per node, balanced (the plan) and by rendezvous alone (what the plan
// did before), for 3, 10 and 250 nodes with 10,000 addresses, and 3
// nodes with 3 addresses.
func BenchmarkBalance(b *testing.B) {
	for _, tc := range []struct{ nodes, vips int }{{3, 3}, {3, 10000}, {10, 10000}, {250, 10000}} {
		b.Run(fmt.Sprintf("nodes=%d/vips=%d", tc.nodes, tc.vips), func(b *testing.B) {
			c := benchCluster(tc.nodes, tc.vips)
			var plan []L2Announcement
			for b.Loop() {
				plan = c.plan(b)
			}
			load, rendezvous := map[string]int{}, map[string]int{}
			var cands []Node
			for _, n := range c.nodes {
				cands = append(cands, Node{Name: n.Name, Alive: true, Selected: true})
			}
			for _, a := range plan {
				load[a.Node]++
				w, _ := Winner(a.Key.String(), cands, false)
				rendezvous[w]++
			}
			mean := float64(tc.vips) / float64(tc.nodes)
			b.ReportMetric(float64(maxOf(load)), "max/node")
			b.ReportMetric(mean, "mean/node")
			b.ReportMetric(float64(maxOf(rendezvous)), "rendezvous-max/node")
			b.Logf("%d nodes, %d addresses: max %d per node, mean %.1f, bound %d; rendezvous alone: max %d",
				tc.nodes, tc.vips, maxOf(load), mean, ceilDiv(tc.vips, tc.nodes)+1, maxOf(rendezvous))
		})
	}
}

// BenchmarkPlanL2Large is one plan at 250 nodes × 10,000 addresses, all
// alive and with 10 dead (orphans re-placed). It prints the time per plan
// and the process's memory afterwards (RssAnon, VmHWM).
func BenchmarkPlanL2Large(b *testing.B) {
	for _, dead := range []int{0, 10} {
		b.Run(fmt.Sprintf("nodes=250/vips=10000/dead=%d", dead), func(b *testing.B) {
			c := benchCluster(250, 10000)
			for i := range dead {
				c.nodes[i*25].Alive = false
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if got := c.plan(b); len(got) != 10000 {
					b.Fatalf("%d announcements", len(got))
				}
			}
			// CPU time, besides the wall clock: on a shared machine the
			// wall clock measures the neighbours too.
			cpu := (cpuTime() - cpu0) / time.Duration(b.N)
			b.ReportMetric(float64(cpu.Milliseconds()), "cpu-ms/plan")
			runtime.GC()
			st := procStatus("RssAnon", "VmHWM")
			b.Logf("250 nodes, 10,000 addresses, %d dead: %v per plan (wall), %v CPU per plan; process RssAnon %s, VmHWM %s",
				dead, b.Elapsed()/time.Duration(b.N), cpu, st["RssAnon"], st["VmHWM"])
		})
	}
}

func benchCluster(nodes, vips int) balanceCase {
	var c balanceCase
	for i := range nodes {
		c.nodes = append(c.nodes, L2Node{Name: fmt.Sprintf("worker-%03d", i), Alive: true})
	}
	for i := range vips {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		c.services = append(c.services, L2Service{Key: fmt.Sprintf("bench/svc-%05d", i), Pool: "lan", Addresses: []netip.Addr{ip}})
	}
	return c
}

func maxOf(m map[string]int) int {
	out := 0
	for _, v := range m {
		out = max(out, v)
	}
	return out
}

// procStatus reads fields of /proc/self/status ("unknown" where it
// cannot).
func procStatus(fields ...string) map[string]string {
	out := map[string]string{}
	for _, f := range fields {
		out[f] = "unknown"
	}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if _, want := out[name]; ok && want {
			out[name] = strings.TrimSpace(value)
		}
	}
	return out
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPlanL2WithoutAdvertisements: without an L2Advertisement no node may
// announce anything, so the plan is empty, and is made without building a
// plan per address (a BGP-only cluster plans on every change of any of its
// 10,000 Services).
func TestPlanL2WithoutAdvertisements(t *testing.T) {
	c := benchCluster(3, 10000)
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	var got []L2Announcement
	allocs := testing.AllocsPerRun(3, func() { got = PlanL2(c.services, pools, nil, c.nodes) })
	if got == nil || len(got) != 0 {
		t.Errorf("plan without advertisements: %d announcements (nil %v), want none", len(got), got == nil)
	}
	if allocs > 10 {
		t.Errorf("plan of 10,000 addresses without advertisements made %v allocations, want a handful", allocs)
	}
}
