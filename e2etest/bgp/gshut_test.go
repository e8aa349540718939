package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
)

// TestBGPGracefulShutdown checks graceful shutdown (RFC 8326) against
// FRR, whose lab configuration honours the GRACEFUL_SHUTDOWN community
// (LOCAL_PREF 0 on such paths, lab.routerConfig): a stopping speaker's
// path carries 65535:0 and leaves the router's ECMP route while the
// speaker still advertises it, and is withdrawn only after the speaker's
// wait (lab.SpeakerBGPGracefulShutdown); then a rolling restart of every
// speaker under a request loop from the host behind the router. Two
// nodes, a Local Service with a pod on each. The speakers run with
// --restart-hold, as the DaemonSet's do: with graceful restart on the
// peer, a rolling restart leaves the routes as they are and fails no
// request.
func TestBGPGracefulShutdown(t *testing.T) {
	needsLab(t)
	l := lab.Start(t, lab.Options{Nodes: 2, Barelb: true, SpeakerArgs: []string{"--restart-hold=30s"}})
	create(t, l, suiteObjects()...)
	waitSessions(t, l, allNodes(l), 60*time.Second)
	for _, n := range allNodes(l) {
		l.RunPod(t, "gshut-"+n, "gshut", n)
	}
	lbService(t, l, "gshut", "gshut", "routed", corev1.ServiceExternalTrafficPolicyLocal)
	v4, v6 := waitIngress(t, l, "gshut")
	l.WaitEndpoints(t, "gshut", 2)
	prefixes := []netip.Prefix{host(v4), host(v6)}
	settled := func(t *testing.T) {
		t.Helper()
		for _, p := range prefixes {
			waitPaths(t, l, p, allNodes(l), 60*time.Second)
			waitKernelNodes(t, l, p, allNodes(l), 30*time.Second)
		}
	}
	settled(t)
	steps := []struct {
		name string
		f    func(*testing.T)
	}{
		{"a stopping speaker's path carries GRACEFUL_SHUTDOWN and leaves the router's route before it is withdrawn", func(t *testing.T) {
			testGracefulShutdownOrder(t, l, host(v4), "node1")
			l.RestartSpeaker(t, "node1")
			settled(t)
		}},
		{"a cordoned node's path carries GRACEFUL_SHUTDOWN and leaves the router's route, without a withdrawal; uncordoned, it is back", func(t *testing.T) {
			testCordon(t, l, host(v4), "node2")
			settled(t)
		}},
		{"rolling restart of every speaker under a request loop from behind the router", func(t *testing.T) {
			testRollingRestartBGP(t, l, []netip.Addr{v4, v6}, settled, maxRollingFailuresBGP, false)
		}},
		{"with graceful restart, a rolling restart in place leaves the router's routes as they are and fails no request", func(t *testing.T) {
			setGracefulRestart(t, l, true)
			for _, n := range allNodes(l) {
				waitGracefulRestart(t, l, n)
			}
			settled(t)
			// Each restarted speaker has refreshed its routes before the
			// next stops, as a DaemonSet waits for the new pod.
			fresh := func(t *testing.T) {
				t.Helper()
				settled(t)
				for _, p := range prefixes {
					lab.Eventually(t, 60*time.Second, "fresh paths to "+p.String()+" from every node", func() (bool, string) {
						paths, err := routerPaths(l, p)
						if err != nil {
							return false, err.Error()
						}
						return len(paths) == len(allNodes(l)) && !slices.ContainsFunc(paths, func(p bgpPath) bool { return p.Stale }), fmt.Sprint(paths)
					})
				}
			}
			testRollingRestartBGP(t, l, []netip.Addr{v4, v6}, fresh, 0, true)
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.f) {
			t.Logf("logs of the lab's processes: %s/logs", l.StateDir())
		}
	}
}

// gshutTimeline is what the router showed of one node's path while that
// node's speaker stopped, in time since SIGTERM (0: never seen).
type gshutTimeline struct {
	// Community is when the path first carried GRACEFUL_SHUTDOWN;
	// Depreferred when the router had then taken it out of its best and
	// multipath set (FRR shows the new attributes a moment before its
	// best-path run), with the path as it was then; Withdrawn when the
	// path was gone.
	Community, Depreferred, Withdrawn time.Duration
	Path                              bgpPath
	// KernelOut is when the node left the router's kernel route.
	KernelOut time.Duration
}

func testGracefulShutdownOrder(t *testing.T, l *lab.Lab, prefix netip.Prefix, node string) {
	addr := nodeAddr(t, l, node, 4).String()
	var (
		mu   sync.Mutex
		tl   gshutTimeline
		errs []string
	)
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	// The router's BGP table, polled as fast as vtysh answers.
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			paths, err := routerPaths(l, prefix)
			at := time.Since(start)
			mu.Lock()
			if err != nil {
				errs = append(errs, err.Error())
			}
			i := slices.IndexFunc(paths, func(p bgpPath) bool { return p.Peer == addr })
			switch {
			case err != nil:
			case i < 0 && tl.Withdrawn == 0:
				tl.Withdrawn = at
			case i >= 0 && slices.Contains(strings.Fields(paths[i].Communities), "graceful-shutdown"):
				if tl.Community == 0 {
					tl.Community, tl.Path = at, paths[i]
				}
				if tl.Depreferred == 0 && depreferred(paths[i]) {
					tl.Depreferred, tl.Path = at, paths[i]
				}
			}
			done := tl.Withdrawn != 0
			mu.Unlock()
			if done {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// The router's kernel route, what its forwarding follows.
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			gws, err := kernelNextHops(l, prefix)
			if err == nil && !slices.Contains(nodesOf(l, gws), node) {
				mu.Lock()
				tl.KernelOut = time.Since(start)
				mu.Unlock()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if err := l.Stop(node, lab.ComponentSpeaker); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	exited := time.Since(start)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		close(stop)
		<-finished
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%s's speaker stopped (SIGTERM) and exited after %v: on the router %s carried GRACEFUL_SHUTDOWN after %v, out of the best and multipath set after %v (%s), left the kernel route after %v, was withdrawn after %v",
		node, exited.Round(time.Millisecond), prefix, tl.Community.Round(time.Millisecond), tl.Depreferred.Round(time.Millisecond), tl.Path,
		tl.KernelOut.Round(time.Millisecond), tl.Withdrawn.Round(time.Millisecond))
	if len(errs) > 0 {
		t.Logf("vtysh errors while polling: %v", errs)
	}
	switch {
	case tl.Community == 0:
		t.Fatalf("the router never saw %s from %s with the GRACEFUL_SHUTDOWN community before it was withdrawn (after %v): no graceful shutdown", prefix, node, tl.Withdrawn)
	case tl.Withdrawn == 0:
		t.Fatalf("the router still has %s from %s 30 s after SIGTERM", prefix, node)
	}
	if tl.Depreferred == 0 {
		t.Errorf("path with GRACEFUL_SHUTDOWN: %s; want LOCAL_PREF 0 (the router's GSHUT policy), neither best nor multipath, before the withdrawal", tl.Path)
	}
	// The speaker waits lab.SpeakerBGPGracefulShutdown between the two;
	// polling may see either end up to a poll late.
	if gap := tl.Withdrawn - tl.Community; gap < lab.SpeakerBGPGracefulShutdown-time.Second {
		t.Errorf("withdrawn %v after the GRACEFUL_SHUTDOWN community reached the router, want about %v", gap, lab.SpeakerBGPGracefulShutdown)
	}
	if tl.KernelOut == 0 || tl.KernelOut >= tl.Withdrawn {
		t.Errorf("%s left the router's kernel route after %v, withdrawn after %v: want the traffic moved before the withdrawal", node, tl.KernelOut, tl.Withdrawn)
	}
}

// depreferred tells whether the router applied its GSHUT policy to p
// and ran its best-path selection since: LOCAL_PREF 0, neither best nor
// multipath.
func depreferred(p bgpPath) bool {
	return p.LocalPref != nil && *p.LocalPref == 0 && !p.Best && !p.Multipath
}

// testCordon cordons node (kubectl drain's first step): its path stays
// on the router, with GRACEFUL_SHUTDOWN and out of the ECMP route; then
// uncordons it.
func testCordon(t *testing.T, l *lab.Lab, prefix netip.Prefix, node string) {
	addr := nodeAddr(t, l, node, 4).String()
	setCordon := func(on bool) {
		update(t, l, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, func(n *corev1.Node) { n.Spec.Unschedulable = on })
	}
	start := time.Now()
	setCordon(true)
	t.Cleanup(func() { setCordon(false) })
	var path bgpPath
	lab.Eventually(t, 30*time.Second, "the router's path from cordoned "+node+" with GRACEFUL_SHUTDOWN, LOCAL_PREF 0, neither best nor multipath", func() (bool, string) {
		paths, err := routerPaths(l, prefix)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range paths {
			if p.Peer == addr {
				path = p
				return slices.Contains(strings.Fields(p.Communities), "graceful-shutdown") && depreferred(p), p.String()
			}
		}
		return false, fmt.Sprintf("no path from %s: %v", addr, paths)
	})
	took := time.Since(start)
	others := slices.DeleteFunc(allNodes(l), func(n string) bool { return n == node })
	waitKernelNodes(t, l, prefix, others, 30*time.Second)
	t.Logf("cordoned %s: its path carries GRACEFUL_SHUTDOWN, out of the best and multipath set, after %v (%s) and the router's kernel route leaves it", node, took.Round(time.Millisecond), path)
	// Still advertised a while later: de-preferred, not withdrawn.
	time.Sleep(2 * time.Second)
	if paths, err := routerPaths(l, prefix); err != nil || !slices.ContainsFunc(paths, func(p bgpPath) bool { return p.Peer == addr }) {
		t.Errorf("cordoned %s's path is gone from the router (%v, %v): a cordon must not withdraw", node, paths, err)
	}
	setCordon(false)
	waitKernelNodes(t, l, prefix, allNodes(l), 30*time.Second)
}

// maxRollingFailuresBGP bounds the failed requests (of about 50 per second
// per address) of a rolling restart. Not 0: a connection in flight when a
// node leaves or rejoins the router's ECMP route (graceful shutdown moves
// traffic away, the restarted speaker brings it back) is hashed to the
// other node, which answers it with a reset; a router hashing flows
// statelessly cannot keep it where it was, whatever the speaker signals.
// Measured (loaded machine): 0-2 of 700-900 per address over four runs,
// and 0-1 of ~600 over two runs without graceful shutdown: with one
// router, moving the traffic away by LOCAL_PREF costs what a withdrawal
// costs. Graceful shutdown pays off where routers learn the withdrawal at
// different times; here the order test (testGracefulShutdownOrder) is the
// one that fails without it. With graceful restart on the peer the
// speakers restarting in place leave the routes as they are, nothing is
// re-hashed, and the next step allows no failure.
const maxRollingFailuresBGP = 5

// testRollingRestartBGP stops and restarts every node's speaker in turn
// (SIGTERM, graceful shutdown, started again, its routes back on the
// router) under one request loop per address from ext, behind the router.
func testRollingRestartBGP(t *testing.T, l *lab.Lab, addrs []netip.Addr, settled func(*testing.T), maxFailed int, stable bool) {
	var loops []*lab.Prober
	for _, a := range addrs {
		// Behind the router a slow answer is no outage to measure: 1 s.
		loops = append(loops, l.StartProberTimeout("ext", lab.URL(a.String()), time.Second))
	}
	// The router's kernel routes, sampled: with stable, every node stays
	// in each, throughout.
	var (
		mu      sync.Mutex
		changes []string
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	if stable {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
				for _, a := range addrs {
					gws, err := kernelNextHops(l, host(a))
					if nodes := nodesOf(l, gws); err == nil && !slices.Equal(nodes, allNodes(l)) {
						mu.Lock()
						changes = append(changes, fmt.Sprintf("%s via %v at %s", a, nodes, time.Now().Format("15:04:05.000")))
						mu.Unlock()
					}
				}
			}
		}()
	}
	start := time.Now()
	for _, n := range allNodes(l) {
		s := time.Now()
		if err := l.Stop(n, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
		}
		stopped := time.Since(s)
		l.RestartSpeaker(t, n)
		settled(t)
		t.Logf("%s: speaker stopped in %v, ready and its routes back on the router %v later",
			n, stopped.Round(time.Millisecond), (time.Since(s) - stopped).Round(time.Millisecond))
		time.Sleep(time.Second)
	}
	close(done)
	wg.Wait()
	for i, lp := range loops {
		r := lp.Stop()
		t.Logf("rolling restart (%v), %s from ext: %v", time.Since(start).Round(time.Millisecond), addrs[i], r)
		if r.Failed > maxFailed {
			t.Errorf("%s: %d of %d requests failed during the rolling restart, want at most %d: %v", addrs[i], r.Failed, r.OK+r.Failed, maxFailed, r.Errors)
		} else if r.Failed > 0 {
			t.Logf("%s: failed requests: %v", addrs[i], r.Errors)
		}
	}
	if len(changes) > 0 {
		t.Errorf("the router's route left a node %d times during the rolling restart, want never: %v", len(changes), changes[:min(len(changes), 10)])
	}
}

// setGracefulRestart turns graceful restart on or off on the suite's
// peer: deleted and created again, since the field cannot change.
func setGracefulRestart(t *testing.T, l *lab.Lab, on bool) {
	t.Helper()
	ctx := context.Background()
	var peer barelbv1beta1.BGPPeer
	key := client.ObjectKey{Namespace: lab.BarelbNamespace, Name: peerName}
	if err := l.Client().Get(ctx, key, &peer); err != nil {
		t.Fatal(err)
	}
	if err := l.Client().Delete(ctx, &peer); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 30*time.Second, "the peer deleted", func() (bool, string) {
		err := l.Client().Get(ctx, key, &barelbv1beta1.BGPPeer{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	again := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer.Name, Namespace: peer.Namespace}, Spec: peer.Spec}
	again.Spec.EnableGracefulRestart = on
	create(t, l, again)
}

// waitGracefulRestart waits until the router's session with node has
// graceful restart negotiated.
func waitGracefulRestart(t *testing.T, l *lab.Lab, node string) {
	t.Helper()
	lab.Eventually(t, 60*time.Second, "the router to see graceful restart on "+node+"'s session", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := l.Vtysh(ctx, "show bgp neighbors "+nodeAddr(t, l, node, 4).String()+" json")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(out), `"gracefulRestart":"advertisedAndReceived"`) ||
			strings.Contains(string(out), `"gracefulRestart":"received"`), string(out)
	})
}
