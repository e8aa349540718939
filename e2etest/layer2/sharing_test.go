package layer2_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
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
	mac, state := l.Neighbour("client", vip)
	t.Logf("client: neigh %s lladdr %s %s (%s)", vip, mac, state, l.NodeOfMAC(mac))
	if got := l.NodeOfMAC(mac); got != alpha {
		t.Errorf("the client resolves %s to %s (%s), want %s", vip, mac, got, alpha)
	}
	if v := scrapeSpeaker(t, l, alpha)["barelb_speaker_addresses_announced"]; v != 1 {
		t.Errorf("%s: barelb_speaker_addresses_announced = %v, want 1 (one address for two Services)", alpha, v)
	}
}

// TestLocalSharedAddress: two Services with externalTrafficPolicy Local
// and different backends (two Deployments' pods) share one address with
// a sharing key. The address is announced only from a node holding a
// ready endpoint of both: while none does, nobody answers for it and a
// NoCommonEndpoint Warning Event tells the Services; once one node holds
// both, it alone answers, and each port reaches its own backend.
func TestLocalSharedAddress(t *testing.T) {
	l := startLab(t)
	const vip = "198.51.100.231"
	l.RunPod(t, "front-0", "front", "node1")
	l.RunPod(t, "api-0", "api", "node2")
	createService(t, l, svcSpec{name: "front", app: "front", port: 80, ip: vip, sharing: "local-mix", ipv4Only: true, local: true})
	createService(t, l, svcSpec{name: "api", app: "api", port: 8080, ip: vip, sharing: "local-mix", ipv4Only: true, local: true})
	for _, svc := range []string{"front", "api"} {
		if ips := l.WaitIngress(t, svc, 1); ips[0] != vip {
			t.Fatalf("Service %s got %v, want the shared %s", svc, ips, vip)
		}
		waitEndpoints4(t, l, svc, 1)
	}

	// No node holds endpoints of both.
	msg := waitEventFor(t, l, "default", "Service", "front", corev1.EventTypeWarning, l2announcer.ReasonNoCommonEndpoint)
	t.Logf("front: %s", msg)
	waitEventFor(t, l, "default", "Service", "api", corev1.EventTypeWarning, l2announcer.ReasonNoCommonEndpoint)
	unanswered := func(what string) {
		t.Helper()
		lab.Eventually(t, 30*time.Second, what, func() (bool, string) {
			got, err := l.WhoHas("client", netip.MustParseAddr(vip))
			front, _ := l.L2Announcer("default", "front")
			api, _ := l.L2Announcer("default", "api")
			return err == nil && len(got) == 0 && front == "" && api == "", fmt.Sprintf("answered by %v (%v), statuses name %q and %q", got, err, front, api)
		})
	}
	unanswered("nobody answering for " + vip + " while no node holds endpoints of both Services")

	// node1 gets an endpoint of api too: it alone announces.
	l.RunPod(t, "api-1", "api", "node1")
	waitEndpoints4(t, l, "api", 2)
	waitAnnouncer(t, l, "front", "node1")
	waitAnnouncer(t, l, "api", "node1")
	if got, err := l.WhoHas("client", netip.MustParseAddr(vip)); err != nil || len(got) != 1 || !strings.EqualFold(got[0], nodeMAC(t, l, "node1")) {
		t.Errorf("%s answered by %v (%v), want node1 alone (%s)", vip, got, err, nodeMAC(t, l, "node1"))
	}
	if seen := waitServed(t, l, vip, "node1", 5); len(seen) != 1 || seen["front-0"] != 5 {
		t.Errorf("http://%s:80/ answered %v, want front-0 only", vip, seen)
	}
	url := fmt.Sprintf("http://%s:8080/", vip)
	lab.Eventually(t, 30*time.Second, url+" answered by api-1 (the endpoint on node1: Local)", func() (bool, string) {
		answer, err := l.Get("client", url, 2*time.Second)
		return err == nil && answer == "api-1", fmt.Sprint(answer, err)
	})

	// node1 loses its api endpoint: nobody may announce again.
	l.DeletePod(t, "api-1")
	waitEndpoints4(t, l, "api", 1)
	unanswered("nobody answering for " + vip + " once node1 lost its endpoint of api")
}
