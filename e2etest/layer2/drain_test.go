package layer2_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/cli"
)

// TestDrain: planned maintenance moves a node's layer-2 addresses
// make-before-break. A request loop (one new connection every 10 ms) runs
// against the IPv4 and the IPv6 address of a dual-stack Service while
// its announcer is drained (kubectl barelb drain: the barelb.io/drain
// label), then undrained, then cordoned (the speakers run with
// --drain-on-cordon) and uncordoned: no request fails, and after each
// step exactly one node answers ARP and NDP for the addresses, the one
// the ServiceL2Status names.
func TestDrain(t *testing.T) {
	needsLab(t)
	l := lab.Start(t, lab.Options{Nodes: 3, Barelb: true, SpeakerArgs: []string{"--drain-on-cordon"}})
	l.ApplyFile(t, "config/samples/l2-pool.yaml")
	ctx := context.Background()
	l.CreateLBService(t, "maint", "maint", corev1.ServiceExternalTrafficPolicyCluster)
	ips := l.WaitIngress(t, "maint", 2)
	for _, h := range l.Nodes() {
		l.RunPod(t, "maint-"+h.Name, "maint", h.Name)
	}
	l.WaitEndpoints(t, "maint", len(l.Nodes()))
	node := waitAnnouncer(t, l, "maint", "")
	for _, ip := range ips {
		waitServed(t, l, ip, node, 0)
	}

	cordon := func(node string, on bool) error {
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"unschedulable": on}})
		return l.Client().Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, client.RawPatch(types.MergePatchType, patch))
	}
	steps := []struct {
		name string
		// act changes node; back: whether the addresses come back to it
		// (else they leave it).
		act  func(node string) error
		back bool
	}{
		{"kubectl barelb drain", func(n string) error { return cli.Drain(ctx, l.Client(), n) }, false},
		{"kubectl barelb undrain", func(n string) error { return cli.Undrain(ctx, l.Client(), n) }, true},
		{"cordon with --drain-on-cordon", func(n string) error { return cordon(n, true) }, false},
		{"uncordon", func(n string) error { return cordon(n, false) }, true},
	}
	drained := node
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) {
			before, _ := l.L2Announcer("default", "maint")
			// Both families answer through the announcer before the
			// loops start: what they count is the move, not the setup.
			for _, ip := range ips {
				waitServed(t, l, ip, before, 0)
			}
			// The pods are new in the first step: IPv6 to a lab pod
			// loses requests in its first second, before any drain
			// (seen in captures: the gap began before the drain was
			// written). What is counted is the move.
			lab.WaitSteady(t, 30*time.Second, func() []*lab.Prober { return startProbers(l, ips) })
			probers := startProbers(l, ips)
			time.Sleep(500 * time.Millisecond)
			start := time.Now()
			if err := s.act(drained); err != nil {
				t.Fatal(err)
			}
			var after string
			lab.Eventually(t, 30*time.Second, "the announcer of maint moving", func() (bool, string) {
				var err error
				after, err = l.L2Announcer("default", "maint")
				moved := after != "" && (s.back && after == drained || !s.back && after != drained)
				return err == nil && moved, after
			})
			statusAt := time.Since(start)
			for _, ip := range ips {
				waitServed(t, l, ip, after, 0)
			}
			moved := time.Since(start)
			time.Sleep(2 * time.Second)
			for i, p := range probers {
				r := p.Stop()
				t.Logf("%s %s→%s, %s: status after %v, client moved after %v; request loop: %v",
					s.name, before, after, ips[i], statusAt.Round(time.Millisecond), moved.Round(time.Millisecond), r)
				bound := maxRollingFailures
				if r.Failed > bound {
					t.Errorf("%s: %d requests failed while the address moved, want at most %d (target 0)", ips[i], r.Failed, bound)
				}
			}
			// Make-before-break, from the speakers' logs: the node the
			// address left stopped answering only once it heard the new
			// one answer for it.
			for _, ip := range ips {
				ann, ok := findLog(l.SpeakerLog(t, after), start, "announcing", ip)
				announced := ann.TS
				if !ok {
					t.Fatalf("no announcement of %s in %s's log", ip, after)
				}
				w, ok := findLog(l.SpeakerLog(t, before), start, "hand-over done; withdrawing", ip)
				withdrawn, heard := w.TS, w.SuccessorHeard
				if !ok {
					// The new announcer was heard before the old one's plan
					// (release.go: claimMemory): no overlap was needed.
					t.Logf("%s: %s announced at +%v, before %s's plan: no hand-over needed", ip, after, announced.Sub(start).Round(time.Millisecond), before)
					continue
				}
				// The new node logs "announcing" a moment after it
				// starts answering, so the old one may hear it (and
				// withdraw) before that line: what counts is that it
				// withdrew because it heard the new one on the wire.
				t.Logf("%s: %s announced at +%v, %s withdrew at +%v having heard it: %v", ip, after, announced.Sub(start).Round(time.Millisecond),
					before, withdrawn.Sub(start).Round(time.Millisecond), heard)
				if !heard {
					t.Errorf("%s: %s withdrew (+%v) without hearing %s answer it (%s announced at +%v)", ip, before, withdrawn.Sub(start), after, after, announced.Sub(start))
				}
			}
			want := strings.ToLower(nodeMAC(t, l, after))
			for _, ip := range ips {
				got, err := l.WhoHas("client", netip.MustParseAddr(ip))
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 || strings.ToLower(got[0]) != want {
					t.Errorf("%s answered by %v, want only %s (%s)", ip, got, after, want)
				}
			}
		})
		if !ok {
			t.Logf("logs of the lab's processes: %s/logs", l.StateDir())
			return
		}
	}
}

// logTime is the time of the first line of a speaker's log after since
// with message msg about address ip; ok is false when there is none.
// logLine is a speaker's log line, the fields the test reads.
type logLine struct {
	Msg            string    `json:"msg"`
	TS             time.Time `json:"ts"`
	Address        string    `json:"address"`
	SuccessorHeard bool      `json:"successorHeard"`
}

// findLog finds the first line msg about ip in a speaker's log since a time.
func findLog(log string, since time.Time, msg, ip string) (logLine, bool) {
	for _, line := range strings.Split(log, "\n") {
		var e logLine
		if json.Unmarshal([]byte(line), &e) != nil || e.Msg != msg || e.Address != ip || e.TS.Before(since) {
			continue
		}
		return e, true
	}
	return logLine{}, false
}
