package layer2_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// needsLab: see lab.NeedsLab.
func needsLab(tb testing.TB) { tb.Helper(); lab.NeedsLab(tb, "the layer-2 suite") }

// waitAnnouncer waits until the Service's ServiceL2Status names a node
// (this one unless want is empty) and returns it.
func waitAnnouncer(tb testing.TB, l *lab.Lab, svc, want string) string {
	tb.Helper()
	var node string
	lab.Eventually(tb, 30*time.Second, "ServiceL2Status of "+svc+" naming "+orAny(want), func() (bool, string) {
		var err error
		node, err = l.L2Announcer("default", svc)
		if err != nil {
			return false, err.Error()
		}
		return node != "" && (want == "" || node == want), "node " + orAny(node)
	})
	return node
}

func orAny(s string) string {
	if s == "" {
		return "any node"
	}
	return s
}

// nodeMAC is a node's MAC address on the LAN.
func nodeMAC(tb testing.TB, l *lab.Lab, node string) string {
	tb.Helper()
	h, err := l.Host(node)
	if err != nil {
		tb.Fatal(err)
	}
	return h.MAC(lab.SegmentLAN)
}

// ipIn runs ip -n NS ARGS.
func ipIn(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip -n %s %v: %w: %s", ns, args, err, out)
	}
	return string(out), nil
}

// waitServed waits until the client reaches ip and its neighbour entry
// for ip holds node's MAC, and returns the answers of n more requests.
func waitServed(tb testing.TB, l *lab.Lab, ip, node string, n int) map[string]int {
	tb.Helper()
	want := nodeMAC(tb, l, node)
	lab.Eventually(tb, 30*time.Second, fmt.Sprintf("the client reaching %s through %s (%s)", ip, node, want), func() (bool, string) {
		answer, err := l.Get("client", lab.URL(ip), time.Second)
		if err != nil {
			return false, err.Error()
		}
		mac, state := l.Neighbour("client", ip)
		return strings.EqualFold(mac, want), fmt.Sprintf("answer %q, neighbour %s %s (%s)", answer, mac, state, l.NodeOfMAC(mac))
	})
	seen := map[string]int{}
	for range n {
		answer, err := l.Get("client", lab.URL(ip), 2*time.Second)
		if err != nil {
			answer = "error: " + err.Error()
		}
		seen[answer]++
	}
	return seen
}
