package election

import (
	"fmt"
	"math/rand"
	"testing"
)

func alive(names ...string) []Node {
	out := make([]Node, len(names))
	for i, n := range names {
		out[i] = Node{Name: n, Alive: true, Selected: true}
	}
	return out
}

func TestWinnerRules(t *testing.T) {
	base := alive("a", "b", "c")
	with := func(f func([]Node)) []Node {
		nodes := append([]Node(nil), base...)
		f(nodes)
		return nodes
	}
	tests := []struct {
		name   string
		nodes  []Node
		local  bool
		want   string
		wantOK bool
	}{
		{"no nodes", nil, false, "", false},
		{"only dead nodes", with(func(n []Node) { n[0].Alive, n[1].Alive, n[2].Alive = false, false, false }), false, "", false},
		{"excluded node never wins", with(func(n []Node) { n[0].Alive, n[1].Alive, n[2].Excluded = false, false, true }), false, "", false},
		{"unselected node never wins", with(func(n []Node) { n[0].Selected, n[1].Selected = false, false }), false, "c", true},
		{"local traffic needs an endpoint", with(func(n []Node) { n[1].HasEndpoint = true }), true, "b", true},
		{"local traffic without endpoints", base, true, "", false},
		{"cluster traffic ignores endpoints", with(func(n []Node) { n[0].Alive, n[2].Alive = false, false }), false, "b", true},
		{"preference beats the hash", with(func(n []Node) { n[2].Preference = 10 }), false, "c", true},
		{"highest preference wins", with(func(n []Node) { n[0].Preference, n[1].Preference = 10, 60 }), false, "b", true},
		{"a dead preferred node is skipped", with(func(n []Node) { n[0].Preference, n[0].Alive, n[1].Preference = 90, false, 10 }), false, "b", true},
	}
	for _, tc := range tests {
		got, ok := Winner("198.51.100.200", tc.nodes, tc.local)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}

// The answer must not depend on the order a speaker happens to list nodes
// in: every speaker must agree.
func TestAllSpeakersAgree(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		nodes := randomNodes(rng, 1+rng.Intn(12))
		key := fmt.Sprintf("198.51.%d.%d", rng.Intn(256), rng.Intn(256))
		local := rng.Intn(3) == 0
		want, wantOK := Winner(key, nodes, local)
		for j := 0; j < 5; j++ {
			shuffled := append([]Node(nil), nodes...)
			rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
			if got, ok := Winner(key, shuffled, local); got != want || ok != wantOK {
				t.Fatalf("order changed the winner for %s: %q vs %q (%+v)", key, got, want, nodes)
			}
		}
	}
}

// When a node leaves, only the addresses it announced move; and they move
// to the node that was their runner-up.
func TestLeavingNodeMovesOnlyItsAddresses(t *testing.T) {
	nodes := alive("n1", "n2", "n3", "n4", "n5", "n6")
	for leaving := range nodes {
		after := append([]Node(nil), nodes...)
		after[leaving].Alive = false
		for i := 0; i < 5000; i++ {
			key := fmt.Sprintf("2001:db8::%x", i)
			before, _ := Winner(key, nodes, false)
			now, _ := Winner(key, after, false)
			if before != nodes[leaving].Name && now != before {
				t.Fatalf("%s moved from %s to %s although %s left", key, before, now, nodes[leaving].Name)
			}
			if now == nodes[leaving].Name {
				t.Fatalf("%s still on the node that left", key)
			}
		}
	}
}

// Over 10,000 addresses, every node's share stays within 10% of the mean.
func TestSpreadIsEven(t *testing.T) {
	for _, n := range []int{2, 3, 5, 10} {
		var names []string
		for i := 0; i < n; i++ {
			names = append(names, fmt.Sprintf("worker-%d", i))
		}
		nodes := alive(names...)
		count := map[string]int{}
		const vips = 10000
		for i := 0; i < vips; i++ {
			key := fmt.Sprintf("198.18.%d.%d", i/256, i%256)
			w, _ := Winner(key, nodes, false)
			count[w]++
		}
		mean := float64(vips) / float64(n)
		for node, c := range count {
			if dev := (float64(c) - mean) / mean; dev > 0.10 || dev < -0.10 {
				t.Errorf("%d nodes: %s announces %d of %d (%.1f%% from the mean)", n, node, c, vips, 100*dev)
			}
		}
		if len(count) != n {
			t.Errorf("%d nodes: only %d announce anything", n, len(count))
		}
	}
}

// Score is shared by every speaker version: pin a few values so that a
// change to it cannot go unnoticed (mixed versions during a rolling
// upgrade would disagree and two nodes would answer).
func TestScoreIsStable(t *testing.T) {
	for _, tc := range []struct {
		node, key string
		want      uint64
	}{
		{"worker-1", "198.51.100.200", 0x929c7c78edabfdf9},
		{"node-a", "2001:db8:100::200", 0xdbd16a8dbc08f9cb},
		{"", "", 0x813f0174a2367c13},
	} {
		if got := Score(tc.node, tc.key); got != tc.want {
			t.Errorf("Score(%q, %q) = %#x, want %#x", tc.node, tc.key, got, tc.want)
		}
	}
	if Score("ab", "c") == Score("a", "bc") {
		t.Error("node and key boundaries are ambiguous")
	}
}

func randomNodes(rng *rand.Rand, n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{
			Name:        fmt.Sprintf("node-%d", rng.Intn(50)),
			Alive:       rng.Intn(5) > 0,
			Excluded:    rng.Intn(10) == 0,
			Selected:    rng.Intn(6) > 0,
			HasEndpoint: rng.Intn(2) == 0,
			Preference:  rng.Intn(3) * 10,
		}
	}
	return nodes
}

func BenchmarkWinner(b *testing.B) {
	nodes := alive("n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10")
	for i := 0; i < b.N; i++ {
		Winner("198.51.100.200", nodes, false)
	}
}
