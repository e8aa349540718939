package layer2_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// TestSharedAddress proves that two Services on different ports share one
// address (barelb.io/allow-shared-ip with the same key, the same requested
// address): one node announces it for both, and the client reaches each
// Service's backend through the one VIP.
func TestSharedAddress(t *testing.T) {
	l := startLab(t)
	const vip = "198.51.100.230"
	l.RunPod(t, "alpha-0", "alpha", "node1")
	l.RunPod(t, "beta-0", "beta", "node2")
	createService(t, l, svcSpec{name: "alpha", app: "alpha", port: 80, ip: vip, sharing: "shared-web", ipv4Only: true})
	createService(t, l, svcSpec{name: "beta", app: "beta", port: 8080, ip: vip, sharing: "shared-web", ipv4Only: true})
	for _, svc := range []string{"alpha", "beta"} {
		if ips := l.WaitIngress(t, svc, 1); ips[0] != vip {
			t.Fatalf("Service %s got %v, want the shared %s", svc, ips, vip)
		}
		waitEndpoints4(t, l, svc, 1)
	}
	alpha := waitAnnouncer(t, l, "alpha", "")
	beta := waitAnnouncer(t, l, "beta", "")
	if alpha != beta {
		t.Fatalf("alpha is announced from %s and beta from %s; one node must answer for the shared address", alpha, beta)
	}
	t.Logf("%s announces %s for both Services (MAC %s)", alpha, vip, nodeMAC(t, l, alpha))

	seen := waitServed(t, l, vip, alpha, 5)
	t.Logf("http://%s:80/: %v", vip, seen)
	if len(seen) != 1 || seen["alpha-0"] != 5 {
		t.Errorf("http://%s:80/ answered %v, want alpha-0 only", vip, seen)
	}
	url := fmt.Sprintf("http://%s:8080/", vip)
	beta8080 := map[string]int{}
	lab.Eventually(t, 30*time.Second, url+" answered by beta-0", func() (bool, string) {
		answer, err := l.Get("client", url, 2*time.Second)
		return err == nil && answer == "beta-0", fmt.Sprint(answer, err)
	})
	for range 5 {
		answer, err := l.Get("client", url, 2*time.Second)
		if err != nil {
			answer = "error: " + err.Error()
		}
		beta8080[answer]++
	}
	t.Logf("%s: %v", url, beta8080)
	if len(beta8080) != 1 || beta8080["beta-0"] != 5 {
		t.Errorf("%s answered %v, want beta-0 only", url, beta8080)
	}
	mac, state := clientNeighbour(l, vip)
	t.Logf("client: neigh %s lladdr %s %s (%s)", vip, mac, state, l.NodeOfMAC(mac))
	if got := l.NodeOfMAC(mac); got != alpha {
		t.Errorf("the client resolves %s to %s (%s), want %s", vip, mac, got, alpha)
	}
	if v := scrapeSpeaker(t, l, alpha)["barelb_speaker_addresses_announced"]; v != 1 {
		t.Errorf("%s: barelb_speaker_addresses_announced = %v, want 1 (one address for two Services)", alpha, v)
	}
}
