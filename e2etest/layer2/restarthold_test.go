package layer2_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// TestRestartHold runs the speakers as the DaemonSet does, with
// --restart-hold. A restart of the announcing speaker moves nothing: the
// client's neighbour entries name its node throughout and no request
// fails. A node that goes down while its speaker is away is failed over
// as after a death: the hold ends when the node stops answering, not when
// its 30 s are up.
func TestRestartHold(t *testing.T) {
	needsLab(t)
	l := lab.Start(t, lab.Options{Nodes: 3, Barelb: true, SpeakerArgs: []string{"--restart-hold=30s"}})
	l.ApplyFile(t, "config/samples/l2-pool.yaml")
	ips, node := haService(t, l)
	nodeMACAddr := nodeMAC(t, l, node)

	t.Run("a restart moves nothing", func(t *testing.T) {
		probers := startProbers(l, ips)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		elsewhere := map[string]int{}
		// The client's neighbour entries as they change, to tell a failed
		// request's cause (the entry) from a cause behind the node.
		transitions := map[string][]string{}
		last := map[string]string{}
		watchStart := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				for _, ip := range ips {
					mac, state := l.Neighbour("client", ip)
					mu.Lock()
					if mac != "" && !strings.EqualFold(mac, nodeMACAddr) {
						elsewhere[ip+" at "+l.NodeOfMAC(mac)]++
					}
					if now := mac + " " + state; now != last[ip] {
						last[ip] = now
						transitions[ip] = append(transitions[ip], fmt.Sprintf("+%v %s", time.Since(watchStart).Round(time.Millisecond), now))
					}
					mu.Unlock()
				}
			}
		}()
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		l.RestartSpeaker(t, node)
		t.Logf("%s's speaker restarted and ready after %v", node, time.Since(start).Round(time.Millisecond))
		waitAnnouncer(t, l, "ha", node)
		time.Sleep(2 * time.Second)
		close(stop)
		wg.Wait()
		for i, p := range probers {
			r := p.Stop()
			t.Logf("%s: %v", ips[i], r)
			if r.Failed > 0 {
				t.Errorf("%s: %d requests failed across a restart of the announcing speaker, want 0: %v; the client's neighbour entry: %v",
					ips[i], r.Failed, r.Errors, transitions[ips[i]])
			}
		}
		if len(elsewhere) > 0 {
			t.Errorf("the client's neighbour entries named another node than %s while its speaker restarted (samples): %v", node, elsewhere)
		}
	})

	t.Run("the node's death during the restart ends the hold", func(t *testing.T) {
		r := measureTakeOver(t, l, "ha", ips, node, func() {
			if err := l.Stop(node, lab.ComponentSpeaker); err != nil {
				t.Fatal(err)
			}
			l.CutFromLAN(t, node)
		})
		r.log(t, "speaker stopped (restart hold) and its node cut off:", ips)
		// Within maxTakeOver, far below the 30 s hold.
		r.check(t)
	})
}
