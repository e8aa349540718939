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

// scaleNamespace holds the Services of BenchmarkBGPScale.
const scaleNamespace = "scale"

// BenchmarkBGPScale measures one node's speaker advertising 10,000
// Services (BARELB_SCALE_SERVICES) to the router, in a one-node lab with
// the real controller, API server and endpointslice controller:
//   - assign-all-s: from the first Service created until every one has
//     its address (the controller's part);
//   - router-all-s: from then until the router has received every route
//     (pfxRcd of the node's session, `show bgp summary json`), and
//     kernel-all-s until its kernel holds them all (zebra's part);
//   - speaker-RSS-MiB and speaker-HWM-MiB: the speaker's VmRSS and VmHWM
//     from /proc when the router holds every route.
//
// The Services are IPv4, Cluster, without node ports or endpoints (BGP
// mode advertises a Cluster Service from every node regardless), from
// 198.18.64.0/18 (free in the lab's plan: pods use 198.18.N.0/24 for
// small N). kube-proxy is stopped: its iptables syncs of 10,000 Services
// are not what is measured. Run it as root:
//
//	go test -run='^$' -bench=BGPScale -benchtime=1x -timeout=60m ./e2etest/bgp/
func BenchmarkBGPScale(b *testing.B) {
	n := 10000
	if s := os.Getenv("BARELB_SCALE_SERVICES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("BARELB_SCALE_SERVICES %q: want a positive number", s)
		}
	}
	ctx := context.Background()
	l := startLab(b, 1)
	if err := l.Stop("node1", lab.ComponentKubeProxy); err != nil {
		b.Fatal(err)
	}
	var peer client.Object
	for _, obj := range suiteObjects() {
		if _, ok := obj.(*barelbv1beta1.BGPPeer); ok {
			peer = obj
		}
	}
	adv := &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "scale", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"scale"}}}
	create(b, l, pool("scale", "198.18.64.0/18"), peer, adv)
	waitSessions(b, l, []string{"node1"}, 60*time.Second)
	cs := unlimitedClientset(b, l.RESTConfig())
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scaleNamespace}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	sp := &speakerProc{l: l, node: "node1"}
	if m, err := sp.memory(); err == nil {
		b.Logf("speaker idle with no Service: VmRSS %.1f MiB, VmHWM %.1f MiB", m.rss, m.hwm)
	}
	node := nodeAddr(b, l, "node1", 4).String()

	b.ResetTimer()
	began := time.Now()
	parallel(b, n, func(i int) error {
		_, err := cs.CoreV1().Services(scaleNamespace).Create(ctx, scaleService(i), metav1.CreateOptions{})
		return err
	})
	b.Logf("created %d Services in %v", n, time.Since(began).Round(time.Millisecond))
	waitAssigned(b, cs, n, 30*time.Minute)
	assigned := time.Now()
	b.Logf("all %d Services assigned %v after the first was created", n, assigned.Sub(began).Round(time.Millisecond))

	progress := time.Now()
	var rcvd int
	for {
		s, err := routerSessions(l, "ipv4Unicast")
		if err == nil {
			rcvd = s[node].PfxRcd
			if rcvd >= n {
				break
			}
		}
		if time.Since(assigned) > 30*time.Minute {
			b.Fatalf("the router received %d of %d routes within 30 minutes of the last assignment (%v)", rcvd, n, err)
		}
		if time.Since(progress) > 30*time.Second {
			progress = time.Now()
			m, _ := sp.memory()
			fmt.Printf("… the router has %d routes; speaker VmRSS %.1f MiB\n", rcvd, m.rss)
		}
		time.Sleep(200 * time.Millisecond)
	}
	routerAll := time.Now()
	mem, err := sp.memory()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("the router received all %d routes %v after every Service was assigned (%v after the first was created); speaker VmRSS %.1f MiB, VmHWM %.1f MiB",
		n, routerAll.Sub(assigned).Round(time.Millisecond), routerAll.Sub(began).Round(time.Millisecond), mem.rss, mem.hwm)
	var inKernel int
	for {
		inKernel, err = kernelBGPRoutes(l)
		if err == nil && inKernel >= n {
			break
		}
		if time.Since(routerAll) > 10*time.Minute {
			b.Fatalf("the router's kernel holds %d of %d routes 10 minutes later (%v)", inKernel, n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	kernelAll := time.Now()
	b.StopTimer()
	b.Logf("the router's kernel held all %d routes %v after every Service was assigned", n, kernelAll.Sub(assigned).Round(time.Millisecond))
	b.ReportMetric(assigned.Sub(began).Seconds(), "assign-all-s")
	b.ReportMetric(routerAll.Sub(assigned).Seconds(), "router-all-s")
	b.ReportMetric(kernelAll.Sub(assigned).Seconds(), "kernel-all-s")
	b.ReportMetric(mem.rss, "speaker-RSS-MiB")
	b.ReportMetric(mem.hwm, "speaker-HWM-MiB")
	b.ReportMetric(0, "ns/op")
}

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
func unlimitedClientset(b *testing.B, cfg *rest.Config) *kubernetes.Clientset {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

// parallel runs f for 0..n-1 on 16 workers and fails on the first error
// (e2etest/scale's way of creating 10,000 Services fast).
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	if err := lab.Parallel(n, 16, f); err != nil {
		b.Fatal(err)
	}
}

// waitAssigned polls, every second, until all n Services of
// scaleNamespace have an address (from the API server's watch cache:
// cheap, and a poll cannot silently lose a watch).
func waitAssigned(b *testing.B, cs *kubernetes.Clientset, n int, limit time.Duration) {
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
	b.Fatalf("only %d Services got an address within %v", assigned, limit)
}

// speakerProc is a node's speaker process, seen from /proc.
type speakerProc struct {
	l    *lab.Lab
	node string
	pid  int
}

type memoryUse struct{ rss, hwm float64 }

func (p *speakerProc) memory() (memoryUse, error) {
	if err := p.findPID(); err != nil {
		return memoryUse{}, err
	}
	m, err := lab.ProcessMemory(p.pid)
	return memoryUse{rss: m.RSS, hwm: m.HWM}, err
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
