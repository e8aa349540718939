package chaos_test

import (
	"testing"
	"time"
)

// TestInterfaceRecreated deletes the LAN interface of the busiest
// announcer and makes it again, with the same name, MAC, addresses and
// routes (a driver reload, a bond or VLAN re-created by the network
// configuration). Its speaker is not restarted: it must answer on the new
// interface (a responder kept for the old one answers nothing). From the
// client's side, once settled, every address has exactly one answerer,
// which its ServiceL2Status names, and serves HTTP; the node answers for
// addresses again.
func TestInterfaceRecreated(t *testing.T) {
	l, assigned := startChaosLab(t, 3)
	before := checkOneAnswerer(t, l, assigned, 30*time.Second).Counts
	node := busiest(before)
	for round := 1; round <= 2; round++ {
		start := time.Now()
		if err := l.RecreateLANLink(node); err != nil {
			t.Fatal(err)
		}
		s := watchSettle(t, l, assigned, start, faultWatch, 60*time.Second)
		t.Logf("round %d: %s's LAN interface made again; settled %v after (last problem %q), answering %v",
			round, node, s.After.Round(time.Millisecond), s.Problem, s.Counts)
		if s.Counts[node] == 0 {
			t.Errorf("round %d: %s answers nothing after its interface was made again (it answered %d addresses before)", round, node, before[node])
		}
	}
}
