package compare

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/barelb/barelb/e2etest/lab"
)

// sizes are a run's sizes (see sizesFromEnv).
type sizes struct {
	// Services is the allocation scenario's number of pending Services
	// (as many are assigned before): 2×Services exist for the restart
	// and memory rows.
	Services int
	// Rounds is the number of rounds of each failover, per family.
	Rounds int
}

// run measures one implementation in a lab of its own and records its
// column of the table.
type run struct {
	tb   testing.TB
	ctx  context.Context
	l    *lab.Lab
	impl implementation
	res  *results
	size sizes
}

func (r *run) name() string { return r.impl.Name() }

func (r *run) fatalf(format string, args ...any) {
	r.tb.Helper()
	r.tb.Fatalf("%s: "+format, append([]any{r.name()}, args...)...)
}

// layer2 creates the HA Service (a backend on every node) and waits until
// the client reaches both of its addresses; it returns them (IPv4 first).
func (r *run) layer2() []string {
	if err := apply(r.ctx, r.l, l2Objects(r.impl)); err != nil {
		r.fatalf("%v", err)
	}
	for _, n := range r.l.Nodes() {
		r.l.RunPod(r.tb, "web-"+n.Name, "web", n.Name)
	}
	began := time.Now()
	r.l.CreateLBService(r.tb, "ha", "web", corev1.ServiceExternalTrafficPolicyCluster)
	ips := r.l.WaitIngress(r.tb, "ha", 2)
	r.res.set(r.name(), "L2: new Service, address assigned (s)", time.Since(began).Seconds())
	r.l.WaitEndpoints(r.tb, "ha", len(r.l.Nodes()))
	for _, ip := range ips {
		lab.Eventually(r.tb, 60*time.Second, r.name()+": the client reaching "+ip, func() (bool, string) {
			body, err := r.l.Get("client", lab.URL(ip), time.Second)
			return err == nil, fmt.Sprint(body, err)
		})
	}
	r.res.set(r.name(), "L2: new Service, client answered on both families (s)", time.Since(began).Seconds())
	return ips
}

// settle waits until the client reaches every ip and the announcer stays
// the same for 3 s (after a node came back, an implementation may move
// the address back).
func (r *run) settle(ips []string) {
	for _, ip := range ips {
		last, since := "", time.Now()
		lab.Eventually(r.tb, 90*time.Second, r.name()+": "+ip+" settled", func() (bool, string) {
			_, err := r.l.Get("client", lab.URL(ip), time.Second)
			node := announcer(r.l, ip)
			if err != nil || node == "" || node != last {
				last, since = node, time.Now()
				return false, fmt.Sprint(node, err)
			}
			return time.Since(since) > 3*time.Second, node
		})
	}
}

// restartSpeaker starts a node's speaker again and waits until it is
// ready. A speaker that exits first is started again after a second, up
// to 5 times, as the kubelet restarts a crashed container: MetalLB's exits
// when its first request to the API server fails, which it does right
// after its node's link came back (no route to host until the node has
// resolved the control plane's address again).
func (r *run) restartSpeaker(node string) {
	for attempt := 1; ; attempt++ {
		if err := r.impl.StartSpeaker(r.l, node); err != nil {
			r.fatalf("restarting the speaker of %s: %v", node, err)
		}
		err := r.impl.WaitSpeaker(r.ctx, r.l, node)
		if err == nil {
			return
		}
		if r.l.ProcessExited(r.impl.SpeakerKey(node)) == nil || attempt == 5 {
			r.fatalf("%v", err)
		}
		r.tb.Logf("%s: the speaker of %s exited before it was ready (%v); starting it again, as the kubelet would", r.name(), node, err)
		time.Sleep(time.Second)
	}
}

// failover measures, per family, rounds of: the announcing node cut off
// the LAN and its speaker SIGKILLed (outage from the client's request
// loop; the ServiceL2Status read once the client is served again), then
// rounds of its speaker SIGKILLed alone, then a rolling restart of every
// speaker (failed requests).
func (r *run) failover(ips []string) {
	family := map[int]string{0: "IPv4", 1: "IPv6"}
	for fi, ip := range ips {
		var cut, kill []time.Duration
		statusOK := 0
		for round := range r.size.Rounds {
			from := announcer(r.l, ip)
			if from == "" {
				r.fatalf("nobody answers for %s", ip)
			}
			ns, port, err := linkPort(r.l, from, lab.SegmentLAN)
			if err != nil {
				r.fatalf("%v", err)
			}
			p := r.l.StartProber("client", lab.URL(ip))
			time.Sleep(300 * time.Millisecond)
			at := time.Now()
			if err := setLink(ns, port, "down"); err != nil {
				r.fatalf("cutting %s: %v", from, err)
			}
			_ = r.l.KillProcess(r.impl.SpeakerKey(from))
			lab.Eventually(r.tb, 120*time.Second, r.name()+": the client served again after "+from+" died", func() (bool, string) {
				return p.OKSince(at.Add(50*time.Millisecond)) && announcer(r.l, ip) != from, ""
			})
			time.Sleep(300 * time.Millisecond)
			outage := p.Stop().Outage
			cut = append(cut, outage)
			now := announcer(r.l, ip)
			nodes, err := l2StatusNodes(r.ctx, r.l, r.impl, "ha")
			if err != nil {
				r.fatalf("%v", err)
			}
			if slices.Equal(nodes, []string{now}) {
				statusOK++
			} else {
				r.tb.Logf("%s: %s round %d: ServiceL2Status names %v, the client is served by %s (%s is dead)", r.name(), ip, round+1, nodes, now, from)
			}
			r.tb.Logf("%s: cut+SIGKILL %s round %d: %s -> %s, outage %v", r.name(), ip, round+1, from, now, outage.Round(time.Millisecond))
			if err := setLink(ns, port, "up"); err != nil {
				r.fatalf("restoring %s: %v", from, err)
			}
			r.restartSpeaker(from)
			r.settle(ips)
		}
		for round := range r.size.Rounds {
			from := announcer(r.l, ip)
			if from == "" {
				r.fatalf("nobody answers for %s", ip)
			}
			p := r.l.StartProber("client", lab.URL(ip))
			time.Sleep(300 * time.Millisecond)
			at := time.Now()
			if err := r.l.KillProcess(r.impl.SpeakerKey(from)); err != nil {
				r.fatalf("%v", err)
			}
			// The killed speaker's node still forwards; the outage is
			// whatever the hand-over costs. Measure until another node
			// answers (or 30 s: an implementation that does not move
			// the address, which then costs nothing).
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) && announcer(r.l, ip) == from {
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			outage := p.Stop().Outage
			kill = append(kill, outage)
			r.tb.Logf("%s: SIGKILL %s round %d: %s -> %s after %v, outage %v", r.name(), ip, round+1, from, announcer(r.l, ip), time.Since(at).Round(time.Millisecond), outage.Round(time.Millisecond))
			r.restartSpeaker(from)
			r.settle(ips)
		}
		r.res.setDurations(r.name(), "L2 "+family[fi]+": node cut off + speaker SIGKILL, outage", cut)
		r.res.setText(r.name(), "L2 "+family[fi]+": ServiceL2Status names only the live announcer after the cut", fmt.Sprintf("%d of %d", statusOK, len(cut)))
		r.res.setDurations(r.name(), "L2 "+family[fi]+": speaker SIGKILL alone, outage", kill)
	}
	// Rolling restart: every speaker in turn, SIGTERM with the grace its
	// manifests give it, started again, ready before the next.
	probers := make([]*lab.Prober, len(ips))
	for i, ip := range ips {
		probers[i] = r.l.StartProber("client", lab.URL(ip))
	}
	for _, n := range r.l.Nodes() {
		if err := r.l.StopProcess(r.impl.SpeakerKey(n.Name), r.impl.StopGrace()); err != nil {
			r.fatalf("%v", err)
		}
		r.restartSpeaker(n.Name)
		time.Sleep(time.Second)
	}
	time.Sleep(2 * time.Second)
	for i, p := range probers {
		failed := p.Stop().Failed
		r.res.set(r.name(), "L2 "+family[i]+": rolling restart of every speaker, failed requests", float64(failed))
	}
	r.settle(ips)
}

// bgp advertises a pool to the router and measures how long after its
// address a new Service's route is in the router's kernel (via every
// node), then how long the router keeps routing to a node cut off with
// its speaker SIGKILLed (hold time bgpHoldTime, no BFD).
func (r *run) bgp() {
	if err := apply(r.ctx, r.l, bgpObjects(r.impl)); err != nil {
		r.fatalf("%v", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "routed", Namespace: "default",
			Annotations: map[string]string{r.impl.PoolRequestAnnotation(): "routed"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	// Sessions first: the time measured is the route's, not the
	// sessions' start.
	lab.Eventually(r.tb, 120*time.Second, r.name()+": BGP sessions of every node", func() (bool, string) {
		out, err := r.l.Vtysh(r.ctx, "show bgp ipv4 unicast summary")
		if err != nil {
			return false, fmt.Sprint(string(out), err)
		}
		return countEstablished(string(out)) >= len(r.l.Nodes()), string(out)
	})
	if err := r.l.Client().Create(r.ctx, svc); err != nil {
		r.fatalf("%v", err)
	}
	vip := r.l.WaitIngress(r.tb, "routed", 1)[0]
	assigned := time.Now()
	lab.Eventually(r.tb, 60*time.Second, r.name()+": the router's route to "+vip+" via every node", func() (bool, string) {
		hops := routerNextHops(r, vip)
		return len(hops) == len(r.l.Nodes()), fmt.Sprint(hops)
	})
	r.res.set(r.name(), "BGP: route in the router's kernel (every node) after the address (s)", time.Since(assigned).Seconds())

	node := r.l.Nodes()[len(r.l.Nodes())-1]
	ns, port, err := linkPort(r.l, node.Name, lab.SegmentRouter)
	if err != nil {
		r.fatalf("%v", err)
	}
	nodeIP := node.Addr(lab.SegmentRouter, 4).String()
	at := time.Now()
	if err := setLink(ns, port, "down"); err != nil {
		r.fatalf("%v", err)
	}
	_ = r.l.KillProcess(r.impl.SpeakerKey(node.Name))
	lab.Eventually(r.tb, 120*time.Second, r.name()+": the router stops routing "+vip+" via "+node.Name, func() (bool, string) {
		hops := routerNextHops(r, vip)
		return !slices.Contains(hops, nodeIP), fmt.Sprint(hops)
	})
	r.res.set(r.name(), "BGP: dead node withdrawn by the router, hold time "+bgpHoldTime+" (s)", time.Since(at).Seconds())
	if err := setLink(ns, port, "up"); err != nil {
		r.fatalf("%v", err)
	}
	r.restartSpeaker(node.Name)
	if err := r.l.Client().Delete(r.ctx, svc); err != nil {
		r.fatalf("%v", err)
	}
}

func countEstablished(summary string) int {
	// `show bgp summary` prints a number of received prefixes (or
	// "(Policy)") in State/PfxRcd for an established session, a state
	// name otherwise.
	n := 0
	for _, line := range strings.Split(summary, "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		if _, err := netip.ParseAddr(strings.TrimPrefix(f[0], "*")); err != nil {
			continue
		}
		last := f[len(f)-2]
		if last == "(Policy)" || isNumber(last) {
			n++
		}
	}
	return n
}

func isNumber(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// routerNextHops returns the next hops of the router's kernel route to
// vip (`ip route show VIP/32`).
func routerNextHops(r *run, vip string) []string {
	out, err := exec.Command("ip", "-n", r.l.Router().Netns, "route", "show", vip+"/32").CombinedOutput()
	if err != nil {
		return nil
	}
	var hops []string
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			hops = append(hops, f[i+1])
		}
	}
	return hops
}
