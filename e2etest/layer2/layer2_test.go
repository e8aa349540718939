package layer2_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

func TestMain(m *testing.M) {
	lab.RunHelperMode()
	os.Exit(m.Run())
}

// Generous bounds: the measured numbers are logged, these only catch a
// broken take-over (which costs 20-40 s of neighbour timers).
const (
	maxTakeOver = 5 * time.Second
	// maxRollingFailures is the number of failed requests (of about 100
	// per second) a rolling restart of every speaker may cost.
	maxRollingFailures = 5
)

func startLab(tb testing.TB) *lab.Lab {
	tb.Helper()
	needsLab(tb)
	l := lab.Start(tb, lab.Options{Nodes: 3, Barelb: true})
	l.ApplyFile(tb, "config/samples/l2-pool.yaml")
	return l
}

func TestLayer2(t *testing.T) {
	l := startLab(t)
	steps := []struct {
		name string
		f    func(*testing.T, *lab.Lab)
	}{
		{"dual-stack Service reachable through the announcing node", testDualStack},
		{"externalTrafficPolicy Local announced from the endpoint's node", testLocal},
		{"take-over when the announcing speaker is SIGKILLed", testKillFailover},
		{"take-over when the announcing node leaves the LAN", testCutFailover},
		{"the client is pointed back when the partition heals", testHealed},
		{"rolling restart of every speaker", testRollingRestart},
		{"no address conflict reported between barelb's own nodes", testNoConflictBetweenSpeakers},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.f(t, l) }) {
			t.Logf("logs of the lab's processes: %s/logs", l.StateDir())
		}
	}
}

func testDualStack(t *testing.T, l *lab.Lab) {
	l.RunPod(t, "web-0", "web", "node1")
	l.RunPod(t, "web-1", "web", "node2")
	l.CreateLBService(t, "web", "web", corev1.ServiceExternalTrafficPolicyCluster)
	ips := l.WaitIngress(t, "web", 2)
	if ips[0] != "198.51.100.200" || ips[1] != "2001:db8:100::200" {
		t.Errorf("Service web got %v, want the pool's first addresses 198.51.100.200 and 2001:db8:100::200", ips)
	}
	l.WaitEndpoints(t, "web", 2)
	node := waitAnnouncer(t, l, "web", "")
	t.Logf("ServiceL2Status: %s announces web (MAC %s)", node, nodeMAC(t, l, node))
	for _, ip := range ips {
		seen := waitServed(t, l, ip, node, 20)
		// kube-proxy on the announcing node may program the second
		// endpoint seconds after the EndpointSlice lists it on a busy
		// machine (its iptables syncs are at least a second apart).
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && (seen["web-0"] == 0 || seen["web-1"] == 0) {
			answer, err := l.Get("client", lab.URL(ip), 2*time.Second)
			if err != nil {
				answer = "error: " + err.Error()
			}
			seen[answer]++
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%s: %v", lab.URL(ip), seen)
		for _, backend := range []string{"web-0", "web-1"} {
			if seen[backend] == 0 {
				t.Errorf("%s: backend %s never answered: %v", ip, backend, seen)
			}
		}
		for answer := range seen {
			// A transient error while kube-proxy catches up is not what
			// this checks; an answer from anything but the backends is.
			if answer != "web-0" && answer != "web-1" && !strings.HasPrefix(answer, "error: ") {
				t.Errorf("%s: unexpected answer %q: %v", ip, answer, seen)
			}
		}
		mac, state := l.Neighbour("client", ip)
		t.Logf("client: neigh %s lladdr %s %s (%s)", ip, mac, state, l.NodeOfMAC(mac))
	}
}

func testLocal(t *testing.T, l *lab.Lab) {
	l.RunPod(t, "local-0", "local", "node3")
	l.CreateLBService(t, "local", "local", corev1.ServiceExternalTrafficPolicyLocal)
	ips := l.WaitIngress(t, "local", 2)
	l.WaitEndpoints(t, "local", 1)
	for _, move := range []struct{ pod, node string }{{"local-0", "node3"}, {"local-1", "node1"}} {
		if move.pod != "local-0" {
			start := time.Now()
			l.DeletePod(t, "local-0")
			l.RunPod(t, move.pod, "local", move.node)
			l.WaitEndpoints(t, "local", 1)
			waitAnnouncer(t, l, "local", move.node)
			t.Logf("announcement moved to %s %v after the pod's deletion", move.node, time.Since(start).Round(time.Millisecond))
		}
		waitAnnouncer(t, l, "local", move.node)
		for _, ip := range ips {
			seen := waitServed(t, l, ip, move.node, 5)
			t.Logf("%s with the pod on %s: %v", lab.URL(ip), move.node, seen)
			if len(seen) != 1 || seen[move.pod] != 5 {
				t.Errorf("%s: want 5 answers from %s, got %v", ip, move.pod, seen)
			}
		}
		// Only that node announces: no other ServiceL2Status, and the
		// announcer stays put for a while.
		time.Sleep(500 * time.Millisecond)
		if node, err := l.L2Announcer("default", "local"); err != nil || node != move.node {
			t.Errorf("ServiceL2Status of local names %q (%v), want %s", node, err, move.node)
		}
	}
}

// haService makes the Service the fail-over steps use: dual stack,
// externalTrafficPolicy Cluster, with a backend on every node but the one
// announcing it, so that cutting that node off loses no backend. It
// returns the addresses and the announcing node.
func haService(tb testing.TB, l *lab.Lab) (ips []string, node string) {
	tb.Helper()
	l.CreateLBService(tb, "ha", "ha", corev1.ServiceExternalTrafficPolicyCluster)
	ips = l.WaitIngress(tb, "ha", 2)
	node = waitAnnouncer(tb, l, "ha", "")
	n := 0
	for _, h := range l.Nodes() {
		if h.Name != node {
			l.RunPod(tb, "ha-"+h.Name, "ha", h.Name)
			n++
		}
	}
	l.WaitEndpoints(tb, "ha", n)
	for _, ip := range ips {
		waitServed(tb, l, ip, node, 0)
	}
	// The pods are new: IPv6 to a lab pod loses requests in its first
	// second (see lab.WaitSteady). What the callers measure starts from a
	// settled data path.
	lab.WaitSteady(tb, 30*time.Second, func() []*lab.Prober { return startProbers(l, ips) })
	return ips, node
}

// startProbers starts a request loop from the client to each address.
func startProbers(l *lab.Lab, ips []string) []*lab.Prober {
	var probers []*lab.Prober
	for _, ip := range ips {
		probers = append(probers, l.StartProber("client", lab.URL(ip)))
	}
	return probers
}

var ha struct {
	ips  []string
	node string
}

func haOnce(t *testing.T, l *lab.Lab) ([]string, string) {
	if ha.ips == nil {
		ha.ips, ha.node = haService(t, l)
	}
	return ha.ips, ha.node
}

// takeOver is one measured fail-over.
type takeOver struct {
	from, to string
	// moved is, per address, when the client's neighbour entry first held
	// the new node's MAC, after the failure.
	moved []time.Duration
	// probes are the request loops' results, per address.
	probes []lab.ProbeResult
	// mismatches are addresses whose client neighbour entry names another
	// node than the Service's ServiceL2Status.
	mismatches []string
	// healMisses counts addresses whose client neighbour entry did not
	// move back to the cut node after the partition healed (cutFailover).
	healMisses int
}

func (r takeOver) worst() time.Duration {
	var w time.Duration
	for _, p := range r.probes {
		w = max(w, p.Outage)
	}
	for _, m := range r.moved {
		w = max(w, m)
	}
	return w
}

func (r takeOver) log(tb testing.TB, what string, ips []string) {
	tb.Helper()
	for i, ip := range ips {
		tb.Logf("%s %s→%s, %s: client neighbour entry moved after %v; request loop: %v",
			what, r.from, r.to, ip, r.moved[i].Round(time.Millisecond), r.probes[i])
	}
	for _, m := range r.mismatches {
		tb.Logf("%s %s", what, m)
	}
}

// check fails the test when the take-over was slow or the addresses went
// elsewhere than the ServiceL2Status says.
func (r takeOver) check(t *testing.T) {
	if w := r.worst(); w > maxTakeOver {
		t.Errorf("take-over took %v, more than %v", w, maxTakeOver)
	}
	for _, m := range r.mismatches {
		t.Errorf("%s: the addresses of one Service are announced by different nodes, or the status is stale", m)
	}
}

// measureTakeOver runs a request loop per address, calls fail, and waits
// until the client's neighbour entries name another node and the
// ServiceL2Status agrees. The loops run 2 s past that.
func measureTakeOver(tb testing.TB, l *lab.Lab, svc string, ips []string, from string, fail func()) takeOver {
	tb.Helper()
	r := takeOver{from: from, moved: make([]time.Duration, len(ips))}
	fromMAC := nodeMAC(tb, l, from)
	probers := startProbers(l, ips)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	fail()
	pending := len(ips)
	for pending > 0 && time.Since(start) < 30*time.Second {
		for i, ip := range ips {
			if r.moved[i] != 0 {
				continue
			}
			if mac, _ := l.Neighbour("client", ip); mac != "" && !strings.EqualFold(mac, fromMAC) {
				r.moved[i] = time.Since(start)
				pending--
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	for _, p := range probers {
		r.probes = append(r.probes, p.Stop())
	}
	if pending > 0 {
		keep := filepath.Join(os.TempDir(), fmt.Sprintf("barelb-broken-%s-%d", l.Prefix(), time.Now().Unix()))
		_ = exec.Command("cp", "-r", filepath.Join(l.StateDir(), "logs"), keep).Run()
		tb.Logf("lab logs kept in %s", keep)
		fmt.Printf("broken take-over from %s: lab logs kept in %s\n", from, keep)
		tb.Fatalf("the client's neighbour entries still name %s %v after the failure", from, time.Since(start).Round(time.Millisecond))
	}
	lab.Eventually(tb, 10*time.Second, "a new announcer of "+svc, func() (bool, string) {
		node, err := l.L2Announcer("default", svc)
		r.to = node
		return err == nil && node != "" && node != from, fmt.Sprint(node, err)
	})
	for _, ip := range ips {
		if mac, _ := l.Neighbour("client", ip); !strings.EqualFold(mac, nodeMAC(tb, l, r.to)) {
			r.mismatches = append(r.mismatches, fmt.Sprintf("%s: the client's neighbour entry has %s (%s), the ServiceL2Status names %s",
				ip, mac, l.NodeOfMAC(mac), r.to))
		}
	}
	return r
}

// killFailover SIGKILLs the announcing speaker, measures, then restarts it
// and waits until it announces again.
func killFailover(tb testing.TB, l *lab.Lab, ips []string, from string) takeOver {
	tb.Helper()
	r := measureTakeOver(tb, l, "ha", ips, from, func() {
		if err := l.Kill(from, lab.ComponentSpeaker); err != nil {
			tb.Fatal(err)
		}
	})
	l.RestartSpeaker(tb, from)
	settle(tb, l, ips, from)
	return r
}

// settle waits until node announces the addresses again (the election is
// deterministic, so the same node wins once it is back) and the client's
// neighbour entries point at it.
func settle(tb testing.TB, l *lab.Lab, ips []string, node string) {
	tb.Helper()
	waitAnnouncer(tb, l, "ha", node)
	for _, ip := range ips {
		waitServed(tb, l, ip, node, 0)
	}
}

func testKillFailover(t *testing.T, l *lab.Lab) {
	ips, node := haOnce(t, l)
	r := killFailover(t, l, ips, node)
	r.log(t, "SIGKILL of the speaker:", ips)
	r.check(t)
}

func testCutFailover(t *testing.T, l *lab.Lab) {
	ips, node := haOnce(t, l)
	var restore func()
	r := measureTakeOver(t, l, "ha", ips, node, func() { restore = l.CutFromLAN(t, node) })
	r.log(t, "LAN link of the node down:", ips)
	r.check(t)
	start := time.Now()
	restore()
	// The node comes back: memberlist merges again and the same node wins;
	// the addresses stay reachable throughout.
	waitAnnouncer(t, l, "ha", node)
	t.Logf("link up: %s announces again after %v", node, time.Since(start).Round(time.Millisecond))
	for _, ip := range ips {
		if answer, err := l.Get("client", lab.URL(ip), 2*time.Second); err != nil {
			t.Errorf("%s after the link came back: %v", ip, err)
		} else {
			mac, state := l.Neighbour("client", ip)
			t.Logf("%s after the link came back: %s, client neighbour %s %s (%s)", ip, answer, mac, state, l.NodeOfMAC(mac))
		}
	}
	healed = time.Now()
}

// healed is when testCutFailover brought the cut node back.
var healed time.Time

// testHealed checks that once a partition heals, the client is pointed at
// the node that announces the address again. The node that kept
// announcing on its side of the partition must tell the LAN (gratuitous
// ARP, unsolicited NA) when it wins the address back, or the client keeps
// sending to the node that stopped announcing for as long as that node
// forwards its traffic.
func testHealed(t *testing.T, l *lab.Lab) {
	if healed.IsZero() {
		t.Skip("needs the partition of the previous step")
	}
	ips, node := haOnce(t, l)
	want := nodeMAC(t, l, node)
	var last string
	for time.Since(healed) < 15*time.Second {
		last = ""
		for _, ip := range ips {
			_, _ = l.Get("client", lab.URL(ip), time.Second)
			if mac, state := l.Neighbour("client", ip); !strings.EqualFold(mac, want) {
				last += fmt.Sprintf(" %s: %s %s (%s);", ip, mac, state, l.NodeOfMAC(mac))
			}
		}
		if last == "" {
			t.Logf("the client's neighbour entries point at %s %v after the link came back", node, time.Since(healed).Round(time.Millisecond))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%v after the partition healed, %s announces ha again (ServiceL2Status) but the client's neighbour entries still name another node:%s "+
		"%s did not re-announce (gratuitous ARP / unsolicited NA) the addresses it kept answering for during the partition",
		time.Since(healed).Round(time.Millisecond), node, last, node)
}

func testRollingRestart(t *testing.T, l *lab.Lab) {
	ips, _ := haOnce(t, l)
	probers := startProbers(l, ips)
	start := time.Now()
	for _, n := range l.Nodes() {
		before, _ := l.L2Announcer("default", "ha")
		s := time.Now()
		if err := l.Stop(n.Name, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
		}
		stopped := time.Since(s)
		l.RestartSpeaker(t, n.Name)
		t.Logf("%s: speaker stopped in %v, ready again %v later (announcer of ha before: %s)",
			n.Name, stopped.Round(time.Millisecond), (time.Since(s) - stopped).Round(time.Millisecond), before)
		time.Sleep(2 * time.Second)
	}
	for i, p := range probers {
		r := p.Stop()
		t.Logf("rolling restart (%v), %s: %v", time.Since(start).Round(time.Millisecond), ips[i], r)
		if r.Failed > maxRollingFailures {
			t.Errorf("%s: %d requests failed during the rolling restart, want at most %d", ips[i], r.Failed, maxRollingFailures)
		}
	}
}

// testNoConflictBetweenSpeakers: after the take-overs, the partition and
// its healing, and the rolling restart of the steps before, no node has
// reported an address conflict on the Service. A node that sees another
// node's gratuitous announcement or answer for an address it announces
// (two speakers answer for a moment while the election settles) must
// not warn that "another host" uses the address: AddressConflict is for
// hosts outside the cluster.
func testNoConflictBetweenSpeakers(t *testing.T, l *lab.Lab) {
	for _, e := range serviceEvents(l, "ha", l2announcer.ReasonAddressConflict) {
		node := "no node"
		for _, n := range l.Nodes() {
			if strings.Contains(strings.ToLower(e.Message), strings.ToLower(n.MAC(lab.SegmentLAN))) {
				node = n.Name
			}
		}
		t.Errorf("AddressConflict Event on ha naming the MAC of %s (x%d): %s", node, e.Count, e.Message)
	}
}

// BenchmarkFailover SIGKILLs the announcing speaker 20 times (restarting
// it in between) and reports, over both families, the median and worst
// take-over (median-ms, worst-ms: until the client's neighbour entry names
// the new node) and outage (outage-median-ms, outage-worst-ms: the longest
// gap in a request loop; a killed speaker's node still forwards what
// reaches it, so this stays small).
//
//	go test -run='^$' -bench='^BenchmarkFailover$' -benchtime=1x ./e2etest/layer2/
func BenchmarkFailover(b *testing.B) {
	benchTakeOver(b, "SIGKILL", killFailover)
}

// cutFailover takes the announcing node's LAN port down, measures, then
// brings it back and waits until that node announces again (memberlist
// merges the two sides within RejoinInterval).
func cutFailover(tb testing.TB, l *lab.Lab, ips []string, from string) takeOver {
	tb.Helper()
	var restore func()
	r := measureTakeOver(tb, l, "ha", ips, from, func() { restore = l.CutFromLAN(tb, from) })
	restore()
	waitAnnouncer(tb, l, "ha", from)
	// Once the partition heals, from wins the addresses back and must
	// point the client at itself again (testHealed). When that does not
	// happen the round is reported and the client's entries are flushed,
	// so that the next rounds still measure the take-over.
	want := nodeMAC(tb, l, from)
	deadline := time.Now().Add(15 * time.Second)
	for _, ip := range ips {
		for {
			_, _ = l.Get("client", lab.URL(ip), time.Second)
			mac, state := l.Neighbour("client", ip)
			if strings.EqualFold(mac, want) {
				break
			}
			if time.Now().After(deadline) {
				r.healMisses++
				tb.Logf("WARNING: %s announces %s again but the client's neighbour entry still names %s (%s, %s) 15 s after the link came back; flushing it",
					from, ip, l.NodeOfMAC(mac), mac, state)
				if _, err := ipIn(l.ClientHost().Netns, "neigh", "flush", "to", ip); err != nil {
					tb.Error(err)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	settle(tb, l, ips, from)
	return r
}

// BenchmarkCutFailover takes the announcing node's LAN link down 20 times
// (bringing it back in between) and reports the same metrics as
// BenchmarkFailover. The outage here is real: the cut node's backends and
// forwarding are gone until the client's neighbour entry moves.
//
//	go test -run='^$' -bench=CutFailover -benchtime=1x ./e2etest/layer2/
func BenchmarkCutFailover(b *testing.B) {
	benchTakeOver(b, "LAN link down", cutFailover)
}

// benchTakeOver repeats a fail-over 20 times (BARELB_ROUNDS) and reports
// the metrics BenchmarkFailover describes.
func benchTakeOver(b *testing.B, what string, failover func(testing.TB, *lab.Lab, []string, string) takeOver) {
	rounds := 20
	if s := os.Getenv("BARELB_ROUNDS"); s != "" {
		if _, err := fmt.Sscan(s, &rounds); err != nil || rounds < 1 {
			b.Fatalf("BARELB_ROUNDS %q: want a positive number", s)
		}
	}
	l := startLab(b)
	ips, node := haService(b, l)
	var outages, moves []time.Duration
	healMisses := 0
	for range b.N {
		for i := range rounds {
			r := failover(b, l, ips, node)
			healMisses += r.healMisses
			if r.worst() > maxTakeOver {
				// Keep the lab's logs of a broken take-over (Down
				// removes them) for a look afterwards.
				keep := filepath.Join(os.TempDir(), fmt.Sprintf("barelb-slow-%s-round%d", l.Prefix(), i+1))
				out, err := exec.Command("cp", "-r", filepath.Join(l.StateDir(), "logs"), keep).CombinedOutput()
				fmt.Printf("%s, round %d: take-over %v from %s to %s; lab logs kept in %s (%v %s)\n",
					what, i+1, r.worst().Round(time.Millisecond), r.from, r.to, keep, err, out)
			}
			r.log(b, fmt.Sprintf("%s, round %d:", what, i+1), ips)
			for _, p := range r.probes {
				outages = append(outages, p.Outage)
			}
			moves = append(moves, r.moved...)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	// The benchmark's log is cut after a few lines; every round's
	// take-over goes to stdout too.
	fmt.Printf("%s take-overs (client neighbour entry moved), in order: %v\n", what, roundMs(moves))
	fmt.Printf("%s outages (longest gap of a request loop), in order: %v\n", what, roundMs(outages))
	for _, m := range []struct {
		prefix string
		ds     []time.Duration
	}{{"", moves}, {"outage-", outages}} {
		sort.Slice(m.ds, func(i, j int) bool { return m.ds[i] < m.ds[j] })
		b.ReportMetric(ms(m.ds[len(m.ds)/2]), m.prefix+"median-ms")
		b.ReportMetric(ms(m.ds[len(m.ds)-1]), m.prefix+"worst-ms")
	}
	if healMisses > 0 {
		b.ReportMetric(float64(healMisses), "heal-misses")
	}
	b.ReportMetric(0, "ns/op")
}

func roundMs(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
