package cluster_test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// TestNodeFailover kills the node that announces a Service's addresses
// the way a machine dies: its kubelet, containerd and every container
// (the speaker too) stop and its LAN link goes down. The backends run on
// the other nodes, so what is measured is barelb's take-over: the time
// from the cut to the first answer through each VIP, from the client.
func TestNodeFailover(t *testing.T) {
	c := start(t, 3, "a")
	c.kubectl(t, "apply", "-k", c.overlay(t, "a"))
	c.waitRollout(t)
	c.apply(t, pool)
	c.apply(t, backend("web", 2))
	checkVIPs(t, c, "web")
	v4, v6 := c.vips(t, "web")
	var victim string
	lab.Eventually(t, 30*time.Second, "one node answering for "+v4, func() (bool, string) {
		macs, err := c.WhoHas("client", netip.MustParseAddr(v4))
		if err != nil || len(macs) != 1 {
			return false, fmt.Sprint(macs, err)
		}
		victim = c.NodeOfMAC(macs[0])
		return victim != "", macs[0]
	})
	// The backends leave the victim, so that its death costs no endpoint.
	c.kubectl(t, "-n", "default", "patch", "deployment", "web", "--type=merge", "-p",
		`{"spec":{"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/hostname","operator":"NotIn","values":["`+victim+`"]}]}]}}}}}}}`)
	c.kubectl(t, "-n", "default", "rollout", "status", "deployment/web", "--timeout=2m")
	checkVIPs(t, c, "web")

	var port string
	for _, ifc := range mustNode(t, c, victim).Interfaces {
		if ifc.Segment == lab.SegmentLAN {
			port = ifc.Port
		}
	}
	cut := time.Now()
	if out, err := exec.Command("ip", "-n", c.State().Bridges[lab.SegmentLAN], "link", "set", port, "down").CombinedOutput(); err != nil {
		t.Fatalf("cutting %s off the LAN: %v %s", victim, err, out)
	}
	if err := c.StopNode(victim); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outage := map[string]time.Duration{}
	var mu sync.Mutex
	for _, ip := range []string{v4, v6} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := c.Get("client", lab.URL(ip), 500*time.Millisecond); err == nil {
					mu.Lock()
					outage[ip] = time.Since(cut)
					mu.Unlock()
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for _, ip := range []string{v4, v6} {
		d, ok := outage[ip]
		if !ok {
			t.Errorf("%s: no answer within 60 s of %s's death", ip, victim)
			continue
		}
		fmt.Printf("node failover (%s announced %s): first answer %v after the cut\n", victim, ip, d.Round(time.Millisecond))
	}
}

func mustNode(t *testing.T, c *cluster, name string) lab.Host {
	t.Helper()
	h, err := c.Host(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
