package cluster_test

import (
	"fmt"
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
	victim := c.answering(t, v4)
	// The backends leave the victim, so that its death costs no endpoint.
	c.kubectl(t, "-n", "default", "patch", "deployment", "web", "--type=merge", "-p", lab.AvoidNodePatch(victim))
	c.kubectl(t, "-n", "default", "rollout", "status", "deployment/web", "--timeout=2m")
	checkVIPs(t, c, "web")

	cut := time.Now()
	if err := c.KillNode(victim); err != nil {
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
