package layer2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/testenv"
)

// needsLab: see lab.NeedsLab.
func needsLab(tb testing.TB) { tb.Helper(); lab.NeedsLab(tb, "the layer-2 suite") }

// applyFile creates every object of a YAML file of the repository.
func applyFile(tb testing.TB, l *lab.Lab, rel string) {
	tb.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		tb.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			tb.Fatalf("decoding %s: %v", rel, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := l.Client().Create(context.Background(), obj); err != nil {
			tb.Fatalf("creating %s %s from %s: %v", obj.GetKind(), obj.GetName(), rel, err)
		}
	}
}

// lbService creates a dual-stack LoadBalancer Service selecting app=APP.
func lbService(tb testing.TB, l *lab.Lab, name, app string, policy corev1.ServiceExternalTrafficPolicy) {
	tb.Helper()
	dual := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			IPFamilyPolicy:        &dual,
			IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			ExternalTrafficPolicy: policy,
			Selector:              map[string]string{"app": app},
			Ports:                 []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if err := l.Client().Create(context.Background(), svc); err != nil {
		tb.Fatal(err)
	}
}

// waitIngress waits for the Service's load-balancer addresses and returns
// them sorted (IPv4 first).
func waitIngress(tb testing.TB, l *lab.Lab, name string, n int) []string {
	tb.Helper()
	var ips []string
	start := time.Now()
	lab.Eventually(tb, 30*time.Second, "addresses of Service "+name, func() (bool, string) {
		var svc corev1.Service
		if err := l.Client().Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, &svc); err != nil {
			return false, err.Error()
		}
		ips = nil
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		sort.Slice(ips, func(i, j int) bool { return strings.Count(ips[i], ":") < strings.Count(ips[j], ":") })
		return len(ips) == n, fmt.Sprint(ips)
	})
	tb.Logf("Service %s got %v after %v", name, ips, time.Since(start).Round(time.Millisecond))
	return ips
}

// announcer returns the node a Service's ServiceL2Status names ("" when
// there is none).
func announcerOf(l *lab.Lab, svc string) (string, error) {
	var list barelbv1beta1.ServiceL2StatusList
	if err := l.Client().List(context.Background(), &list, client.InNamespace(lab.BarelbNamespace),
		client.MatchingLabels{barelbv1beta1.LabelServiceName: svc, barelbv1beta1.LabelServiceNamespace: "default"}); err != nil {
		return "", err
	}
	switch len(list.Items) {
	case 0:
		return "", nil
	case 1:
		return list.Items[0].Status.Node, nil
	}
	var nodes []string
	for _, s := range list.Items {
		nodes = append(nodes, s.Status.Node)
	}
	return "", fmt.Errorf("%d ServiceL2Statuses for %s: %v", len(list.Items), svc, nodes)
}

// waitAnnouncer waits until the Service's ServiceL2Status names a node
// (this one unless want is empty) and returns it.
func waitAnnouncer(tb testing.TB, l *lab.Lab, svc, want string) string {
	tb.Helper()
	var node string
	lab.Eventually(tb, 30*time.Second, "ServiceL2Status of "+svc+" naming "+orAny(want), func() (bool, string) {
		var err error
		node, err = announcerOf(l, svc)
		if err != nil {
			return false, err.Error()
		}
		return node != "" && (want == "" || node == want), "node " + orAny(node)
	})
	return node
}

func orAny(s string) string {
	if s == "" {
		return "any node"
	}
	return s
}

// nodeMAC is a node's MAC address on the LAN.
func nodeMAC(tb testing.TB, l *lab.Lab, node string) string {
	tb.Helper()
	h, err := l.Host(node)
	if err != nil {
		tb.Fatal(err)
	}
	return h.MAC(lab.SegmentLAN)
}

// nodeOfMAC names the node with this LAN MAC ("" when none).
func nodeOfMAC(l *lab.Lab, mac string) string {
	for _, n := range l.Nodes() {
		if strings.EqualFold(n.MAC(lab.SegmentLAN), mac) {
			return n.Name
		}
	}
	return ""
}

// clientNeighbour returns the MAC of the client's neighbour entry for ip
// and the entry's state ("" when there is none or it has no address). It
// runs `ip -n CLIENT neigh show IP`.
func clientNeighbour(l *lab.Lab, ip string) (mac, state string) {
	out, err := ipIn(l.ClientHost().Netns, "neigh", "show", ip)
	if err != nil {
		return "", ""
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			mac = f[i+1]
		}
	}
	if len(f) > 0 {
		state = f[len(f)-1]
	}
	return mac, state
}

// ipIn runs ip -n NS ARGS.
func ipIn(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip -n %s %v: %w: %s", ns, args, err, out)
	}
	return string(out), nil
}

// waitServed waits until the client reaches ip and its neighbour entry
// for ip holds node's MAC, and returns the answers of n more requests.
func waitServed(tb testing.TB, l *lab.Lab, ip, node string, n int) map[string]int {
	tb.Helper()
	want := nodeMAC(tb, l, node)
	lab.Eventually(tb, 30*time.Second, fmt.Sprintf("the client reaching %s through %s (%s)", ip, node, want), func() (bool, string) {
		answer, err := l.Get("client", lab.URL(ip), time.Second)
		if err != nil {
			return false, err.Error()
		}
		mac, state := clientNeighbour(l, ip)
		return strings.EqualFold(mac, want), fmt.Sprintf("answer %q, neighbour %s %s (%s)", answer, mac, state, nodeOfMAC(l, mac))
	})
	seen := map[string]int{}
	for range n {
		answer, err := l.Get("client", lab.URL(ip), 2*time.Second)
		if err != nil {
			answer = "error: " + err.Error()
		}
		seen[answer]++
	}
	return seen
}

// prober requests a URL from the client every interval, one new
// connection each, and records when requests succeeded.
type prober struct {
	url      string
	interval time.Duration
	timeout  time.Duration
	hc       *http.Client
	stop     chan struct{}
	done     chan struct{}

	mu      sync.Mutex
	ok      []time.Time
	failed  int
	answers map[string]int
	started time.Time
}

func startProber(l *lab.Lab, url string) *prober {
	p := &prober{url: url, interval: 10 * time.Millisecond, timeout: 200 * time.Millisecond,
		stop: make(chan struct{}), done: make(chan struct{}), answers: map[string]int{}}
	p.hc = l.HTTPClient("client", p.timeout)
	p.started = time.Now()
	go p.run()
	return p
}

func (p *prober) run() {
	defer close(p.done)
	defer p.hc.CloseIdleConnections()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		resp, err := p.hc.Get(p.url)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		now := time.Now()
		p.mu.Lock()
		if err != nil {
			p.failed++
		} else {
			p.ok = append(p.ok, now)
			p.answers[strings.TrimSpace(string(body))]++
		}
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-time.After(p.interval):
		}
	}
}

// probeResult is what a prober saw.
type probeResult struct {
	OK, Failed int
	// Outage is the longest time between two successful answers (or from
	// the start to the first, or from the last to the end).
	Outage time.Duration
	// OutageAt is when the longest gap began, after the prober started.
	OutageAt time.Duration
	Answers  map[string]int
}

func (r probeResult) String() string {
	return fmt.Sprintf("%d ok, %d failed, longest gap %v (from +%v), answers %v",
		r.OK, r.Failed, r.Outage.Round(time.Millisecond), r.OutageAt.Round(time.Millisecond), r.Answers)
}

func (p *prober) Stop() probeResult {
	close(p.stop)
	<-p.done
	end := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := probeResult{OK: len(p.ok), Failed: p.failed, Answers: p.answers}
	prev := p.started
	for _, t := range append(append([]time.Time(nil), p.ok...), end) {
		if gap := t.Sub(prev); gap > r.Outage {
			r.Outage, r.OutageAt = gap, prev.Sub(p.started)
		}
		prev = t
	}
	return r
}
