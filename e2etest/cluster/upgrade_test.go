package cluster_test

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// maxMoveResets is how many connections in flight TestUpgrade lets its
// addresses' moves reset: two speaker roll-outs, each moving the owner's
// addresses away and back.
const maxMoveResets = 4

// TestUpgrade installs barelb with images tagged a, starts a request loop
// from the client to both VIPs, upgrades to images tagged b (kubectl apply
// -k: CRDs first, then a rolling update of the DaemonSet and the
// Deployment) and rolls back to a. Every request must succeed and the
// Service must keep its addresses.
//
// Two faults once lost requests here, both fixed: the pods' bridge took
// a new pod's lower MAC, which IPv6 pods learnt only ~30 s later (the
// lab's cni0 has a fixed MAC now, as a node's should), and a stopping
// speaker's periodic announcement moved its addresses back after its
// successor had taken them, resetting the connections in flight
// (layer2.Responder.Leave).
//
// One kind of failure is allowed, and counted apart: a connection reset
// because its address moved while it was open. A rolling update moves the
// owner's addresses twice (to another node while its speaker restarts,
// back once it is ready), and a client that switches to the new node's
// MAC in the middle of a connection reaches a node whose connection
// tracking does not know it, as with any layer-2 move (MetalLB's too).
// With a new connection every 50 ms that happens in about one run in six
// here; a timeout, a refusal or more resets than moves fail the test.
func TestUpgrade(t *testing.T) {
	c := start(t, 2, "a", "b")
	c.kubectl(t, "apply", "-k", c.overlay(t, "a"))
	c.waitRollout(t)
	c.apply(t, pool)
	c.apply(t, backend("web", 2))
	checkVIPs(t, c, "web")
	v4, v6 := c.vips(t, "web")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	type result struct{ ok, failed, reset int }
	results := map[string]*result{}
	var mu sync.Mutex
	for _, ip := range []string{v4, v6} {
		results[ip] = &result{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, err := c.get(lab.URL(ip))
				mu.Lock()
				switch {
				case errors.Is(err, syscall.ECONNRESET):
					results[ip].reset++
					t.Logf("%s: connection reset at %s: %v", ip, time.Now().Format("15:04:05.000"), err)
				case err != nil:
					results[ip].failed++
					t.Logf("%s: request failed at %s: %v", ip, time.Now().Format("15:04:05.000"), err)
				default:
					results[ip].ok++
				}
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	for _, tag := range []string{"b", "a"} {
		start := time.Now()
		c.kubectl(t, "apply", "-k", c.overlay(t, tag))
		c.waitRollout(t)
		for _, obj := range []string{"daemonset/barelb-speaker", "deployment/barelb-controller"} {
			img := c.kubectl(t, "-n", namespace, "get", obj, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
			if want := imageRepo + "/" + map[string]string{"daemonset/barelb-speaker": "speaker", "deployment/barelb-controller": "controller"}[obj] + ":" + tag; img != want {
				t.Errorf("%s runs %s, want %s", obj, img, want)
			}
		}
		t.Logf("rolled out %s in %v", tag, time.Since(start).Round(time.Millisecond))
		// Requests go on a little after the rollout.
		time.Sleep(3 * time.Second)
	}
	cancel()
	wg.Wait()
	for ip, r := range results {
		total := r.ok + r.failed + r.reset
		t.Logf("%s: %d requests, %d failed, %d reset in flight", ip, total, r.failed, r.reset)
		if r.failed > 0 || r.ok == 0 {
			t.Errorf("%s: %d of %d requests failed (no answer, refused, wrong answer) during upgrade and rollback, want 0", ip, r.failed, total)
		}
		if r.reset > maxMoveResets {
			t.Errorf("%s: %d connections reset during upgrade and rollback, want at most %d (one per move of the address)", ip, r.reset, maxMoveResets)
		}
	}
	if a4, a6 := c.vips(t, "web"); a4 != v4 || a6 != v6 {
		t.Errorf("the Service's addresses changed from %s %s to %s %s", v4, v6, a4, a6)
	}
}
