package bgp_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/config"
)

// BenchmarkBGPWithdrawal measures how long the router keeps routing to a
// node that died, with BFD at 100 ms × 3 on both sides: node3's link to
// the router goes down and its speaker is SIGKILLed (a dead machine says
// nothing; a SIGKILL alone lets the kernel close TCP, which is not what
// BFD is for), and the router's kernel route is polled until node3 is no
// longer a next hop. 20 rounds (BARELB_ROUNDS), node3 revived in between;
// it reports the median and worst (median-ms, worst-ms; target: median
// under 1 s).
//
//	go test -run='^$' -bench=BGPWithdrawal -benchtime=1x ./e2etest/bgp/
func BenchmarkBGPWithdrawal(b *testing.B) {
	rounds := 20
	if s := os.Getenv("BARELB_ROUNDS"); s != "" {
		if _, err := fmt.Sscan(s, &rounds); err != nil || rounds < 1 {
			b.Fatalf("BARELB_ROUNDS %q: want a positive number", s)
		}
	}
	l := startLab(b, 3)
	create(b, l, suiteObjects()...)
	prefix := host(haService(b, l, "ha"))
	enableBFD(b, l)
	var took []time.Duration
	for range b.N {
		for i := range rounds {
			start := time.Now()
			revive := killNode(b, l, "node3")
			d, ok := measureWithdrawal(l, prefix, "node3", start, 3*holdTime)
			if !ok {
				b.Fatalf("round %d: the router still routes %s via node3 %v after it died", i+1, prefix, d)
			}
			took = append(took, d)
			fmt.Printf("round %d: route via node3 gone %v after the node died\n", i+1, d.Round(time.Millisecond))
			revive(prefix)
			waitBFD(b, l)
		}
	}
	sorted := append([]time.Duration(nil), took...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	b.Logf("withdrawal with BFD 100 ms × 3 over %d rounds: median %v, worst %v, best %v", len(took),
		median(took).Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond), sorted[0].Round(time.Millisecond))
	b.ReportMetric(ms(median(took)), "median-ms")
	b.ReportMetric(ms(sorted[len(sorted)-1]), "worst-ms")
	b.ReportMetric(0, "ns/op")
}

// scaleNamespace holds the Services of the scale runs.
const scaleNamespace = "scale"

// BenchmarkBGPScale measures one node's speaker advertising 10,000
// Services (BARELB_SCALE_SERVICES) to one router over 1 and over 4
// sessions, in a one-node lab with the real controller, API server and
// endpointslice controller:
//   - assign-all-s: from the first Service created until every one has
//     its address (the controller's part);
//   - router-all-s: from then until the router has received every route
//     on every session (pfxRcd, `show bgp summary json`), and
//     kernel-all-s until its kernel holds them all (zebra's part);
//   - anon-MiB, rss-MiB and hwm-MiB: the speaker's RssAnon, VmRSS and
//     VmHWM (peak) from /proc when the router holds every route (targets:
//     anonymous under 48 MiB, peak under 96 MiB).
//
// The Services are IPv4, Cluster, without node ports or endpoints (BGP
// mode advertises a Cluster Service from every node regardless), from
// 198.18.64.0/18 (free in the lab's plan: pods use 198.18.N.0/24 for
// small N). kube-proxy is stopped: its iptables syncs of 10,000 Services
// are not what is measured. The four sessions go to the same router from
// four source addresses of the node (the router's listen range accepts
// them as four neighbours). BARELB_SCALE_HEAP=FILE writes the speaker's
// heap profile (pprof) there once the router holds every route. Run it as
// root:
//
//	go test -run='^$' -bench=BGPScale -benchtime=1x -timeout=60m ./e2etest/bgp/
//
// TestBGPScaleSlice runs a small slice of it in every `make test`.
func BenchmarkBGPScale(b *testing.B) {
	n := 10000
	if s := os.Getenv("BARELB_SCALE_SERVICES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("BARELB_SCALE_SERVICES %q: want a positive number", s)
		}
	}
	for _, peers := range []int{1, 4} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			var res scaleResult
			for range b.N {
				res = scaleRun(b, n, peers, os.Getenv("BARELB_SCALE_HEAP"))
			}
			b.ReportMetric(res.assign.Seconds(), "assign-all-s")
			b.ReportMetric(res.router.Seconds(), "router-all-s")
			b.ReportMetric(res.kernel.Seconds(), "kernel-all-s")
			b.ReportMetric(res.mem.Anon, "anon-MiB")
			b.ReportMetric(res.mem.RSS, "rss-MiB")
			b.ReportMetric(res.mem.HWM, "hwm-MiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestBGPScaleSlice is a small slice of BenchmarkBGPScale for every test
// run: 300 Services over 4 sessions; it checks that every session carries
// every route and prints the numbers (never judged: memory and time are
// the benchmark's business).
func TestBGPScaleSlice(t *testing.T) {
	res := scaleRun(t, 300, 4, "")
	t.Logf("300 Services over 4 sessions: router holds every route %v after the last assignment; speaker RssAnon %.1f MiB, VmRSS %.1f MiB, VmHWM %.1f MiB",
		res.router.Round(time.Millisecond), res.mem.Anon, res.mem.RSS, res.mem.HWM)
}

// scaleResult is what a scale run measured.
type scaleResult struct {
	assign, router, kernel time.Duration
	mem                    lab.Memory
}

// scaleRun starts a one-node lab whose speaker opens peers sessions with
// the router, creates n Services and waits until the router holds all
// their routes on every session and in its kernel.
func scaleRun(tb testing.TB, n, peers int, heapFile string) scaleResult {
	ctx := context.Background()
	needsLab(tb)
	opts := lab.Options{Nodes: 1, Barelb: true}
	if heapFile != "" {
		opts.SpeakerArgs = []string{"--pprof-bind-address=" + scalePprofAddr}
	}
	l := lab.Start(tb, opts)
	if err := l.Stop("node1", lab.ComponentKubeProxy); err != nil {
		tb.Fatal(err)
	}
	var peer *barelbv1beta1.BGPPeer
	for _, obj := range suiteObjects() {
		if p, ok := obj.(*barelbv1beta1.BGPPeer); ok {
			peer = p
		}
	}
	// Sessions 2..peers start from extra addresses of node1 on the router
	// segment, so that the router sees as many neighbours.
	sources := []string{nodeAddr(tb, l, "node1", 4).String()}
	objs := []client.Object{pool("scale", "198.18.64.0/18")}
	for i := range peers {
		p := peer.DeepCopy()
		if i > 0 {
			src := fmt.Sprintf("203.0.113.%d", 50+i)
			if _, err := l.Exec(ctx, "node1", "ip", "addr", "add", src+"/26", "dev", "eth1"); err != nil {
				tb.Fatal(err)
			}
			sources = append(sources, src)
			p.Name = fmt.Sprintf("%s-%d", peerName, i)
			p.Spec.SourceAddress = src
		}
		objs = append(objs, p)
	}
	objs = append(objs, &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "scale", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"scale"}}})
	create(tb, l, objs...)
	lab.Eventually(tb, 60*time.Second, fmt.Sprintf("%d established sessions", peers), func() (bool, string) {
		s, err := routerSessions(l, "ipv4Unicast")
		if err != nil {
			return false, err.Error()
		}
		for _, src := range sources {
			if s[src].State != "Established" {
				return false, fmt.Sprint(s)
			}
		}
		return true, ""
	})
	cs := unlimitedClientset(tb, l.RESTConfig())
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scaleNamespace}}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	sp := &speakerProc{l: l, node: "node1"}
	if m, err := sp.memory(); err == nil {
		tb.Logf("speaker idle with %d sessions and no Service: RssAnon %.1f MiB, VmRSS %.1f MiB, VmHWM %.1f MiB", peers, m.Anon, m.RSS, m.HWM)
	}
	if b, ok := tb.(*testing.B); ok {
		b.ResetTimer()
	}
	began := time.Now()
	if err := lab.Parallel(n, 16, func(i int) error {
		_, err := cs.CoreV1().Services(scaleNamespace).Create(ctx, scaleService(i), metav1.CreateOptions{})
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("created %d Services in %v", n, time.Since(began).Round(time.Millisecond))
	waitAssigned(tb, cs, n, 30*time.Minute)
	assigned := time.Now()
	tb.Logf("all %d Services assigned %v after the first was created", n, assigned.Sub(began).Round(time.Millisecond))

	progress := time.Now()
	for {
		s, err := routerSessions(l, "ipv4Unicast")
		least := n
		if err == nil {
			for _, src := range sources {
				least = min(least, s[src].PfxRcd)
			}
			if least >= n {
				break
			}
		}
		if time.Since(assigned) > 30*time.Minute {
			tb.Fatalf("the router received at least %d of %d routes per session within 30 minutes of the last assignment (%v)", least, n, err)
		}
		if time.Since(progress) > 30*time.Second {
			progress = time.Now()
			m, _ := sp.memory()
			fmt.Printf("… the router has at least %d routes per session; speaker VmRSS %.1f MiB\n", least, m.RSS)
		}
		time.Sleep(100 * time.Millisecond)
	}
	routerAll := time.Now()
	mem, err := sp.memory()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("the router received all %d routes on %d sessions %v after every Service was assigned (%v after the first was created); speaker RssAnon %.1f MiB, VmRSS %.1f MiB, VmHWM %.1f MiB",
		n, peers, routerAll.Sub(assigned).Round(time.Millisecond), routerAll.Sub(began).Round(time.Millisecond), mem.Anon, mem.RSS, mem.HWM)
	if heapFile != "" {
		out, err := l.Exec(ctx, "node1", "curl", "-sf", "http://"+scalePprofAddr+"/debug/pprof/heap")
		if err != nil {
			tb.Errorf("reading the speaker's heap profile: %v", err)
		} else if err := os.WriteFile(heapFile, out, 0o644); err != nil {
			tb.Error(err)
		}
	}
	var inKernel int
	for {
		inKernel, err = kernelBGPRoutes(l)
		if err == nil && inKernel >= n {
			break
		}
		if time.Since(routerAll) > 10*time.Minute {
			tb.Fatalf("the router's kernel holds %d of %d routes 10 minutes later (%v)", inKernel, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	kernelAll := time.Now()
	if b, ok := tb.(*testing.B); ok {
		b.StopTimer()
	}
	tb.Logf("the router's kernel held all %d routes %v after every Service was assigned", n, kernelAll.Sub(assigned).Round(time.Millisecond))
	return scaleResult{assign: assigned.Sub(began), router: routerAll.Sub(assigned), kernel: kernelAll.Sub(assigned), mem: mem}
}

// scalePprofAddr is where the speaker serves pprof when a scale run asks
// for its heap profile (inside the node's namespace).
const scalePprofAddr = "127.0.0.1:6060"

// scaleService is Service i of BenchmarkBGPScale: no node ports (the
// default range runs out at 2,768 Services), no endpoints.
func scaleService(i int) *corev1.Service {
	noNodePorts := false
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%05d", i),
			Annotations: map[string]string{config.AnnotationAddressPool: "scale"}},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: &noNodePorts,
			Selector:                      map[string]string{"app": fmt.Sprintf("app-%d", i)},
			Ports:                         []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
}

// kernelBGPRoutes counts the router's kernel IPv4 routes from bgpd.
func kernelBGPRoutes(l *lab.Lab) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, "router", "ip", "-4", "route", "show", "proto", "bgp")
	if err != nil {
		return 0, err
	}
	return strings.Count(string(out), "\n"), nil
}

// unlimitedClientset lifts client-go's rate limit: the writes are the
// load, as in e2etest/scale.
func unlimitedClientset(tb testing.TB, cfg *rest.Config) *kubernetes.Clientset {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// waitAssigned polls, every second, until all n Services of
// scaleNamespace have an address (from the API server's watch cache:
// cheap, and a poll cannot silently lose a watch).
func waitAssigned(tb testing.TB, cs *kubernetes.Clientset, n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	assigned := 0
	for time.Now().Before(deadline) {
		list, err := cs.CoreV1().Services(scaleNamespace).List(context.Background(), metav1.ListOptions{ResourceVersion: "0"})
		if err == nil {
			assigned = 0
			for i := range list.Items {
				if len(list.Items[i].Status.LoadBalancer.Ingress) > 0 {
					assigned++
				}
			}
			if assigned >= n {
				return
			}
		}
		time.Sleep(time.Second)
	}
	tb.Fatalf("only %d Services got an address within %v", assigned, limit)
}

// speakerProc is a node's speaker process, seen from /proc.
type speakerProc struct {
	l    *lab.Lab
	node string
	pid  int
}

func (p *speakerProc) memory() (lab.Memory, error) {
	if err := p.findPID(); err != nil {
		return lab.Memory{}, err
	}
	return lab.ProcessMemory(p.pid)
}

// findPID finds the node's speaker process, again once it has been
// restarted.
func (p *speakerProc) findPID() error {
	if p.pid != 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.pid)); err == nil {
			return nil
		}
	}
	pid, err := p.l.SpeakerPID(p.node)
	p.pid = pid
	return err
}
