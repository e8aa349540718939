package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/testenv"
)

func TestMain(m *testing.M) {
	lab.RunHelperMode()
	os.Exit(m.Run())
}

// needsLab: see lab.NeedsLab.
func needsLab(t *testing.T) { t.Helper(); lab.NeedsLab(t, "the lab") }

// TestCLI drives a lab the way people do: lab up, kubectl, exec, kill,
// down, and checks that nothing is left.
func TestCLI(t *testing.T) {
	needsLab(t)
	dir := t.TempDir()
	if err := testenv.BuildPrograms(context.Background(), dir, "./e2etest/cmd/lab"); err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(filepath.Join(dir, "lab"), args...)
		cmd.Dir = root
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("lab %v: %v\n%s%s", args, err, out, stderr.String())
		}
		t.Logf("lab %v: %s", args, strings.TrimSpace(stderr.String()))
		return out
	}
	prefix := fmt.Sprintf("blb%04x", os.Getpid()&0xffff)
	t.Cleanup(func() {
		left, err := lab.Leftovers(prefix, "")
		if err != nil || len(left) > 0 {
			t.Errorf("left behind: %v %v", left, err)
			_ = lab.Cleanup(prefix, "")
		}
	})
	start := time.Now()
	// barelb has its own suites (e2etest/layer2); this one needs only
	// `make tools`.
	out := run("up", "--nodes", "2", "--prefix", prefix, "--barelb=false")
	t.Logf("up took %v", time.Since(start).Round(time.Millisecond))
	var st lab.State
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("up printed no JSON object: %v\n%s", err, out)
	}
	if st.Prefix != prefix || len(st.Nodes) != 2 || st.Pools.IPv4 != lab.PoolV4 {
		t.Errorf("unexpected state: %+v", st)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", st.Kubeconfig, "get", "nodes").CombinedOutput(); err != nil {
		t.Errorf("kubectl: %v\n%s", err, out)
	}
	if out := run("exec", "--lab", prefix, "node2", "--", "ip", "-br", "addr", "show", "eth0"); !strings.Contains(string(out), "198.51.100.12/24") {
		t.Errorf("exec node2 ip addr: %s", out)
	}
	run("kill", "--lab", prefix, "node1", "kube-proxy")
	run("restart", "--lab", prefix, "node1", "kube-proxy")
	run("status", "--lab", prefix)
	start = time.Now()
	run("down", "--lab", prefix)
	t.Logf("down took %v", time.Since(start).Round(time.Millisecond))
}

// TestLab brings one lab up and proves each part of it in turn, then that
// tearing it down leaves nothing behind.
func TestLab(t *testing.T) {
	needsLab(t)
	var prefix, stateRoot string
	t.Cleanup(func() {
		if prefix == "" {
			return
		}
		left, err := lab.Leftovers(prefix, stateRoot)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("the lab left behind: %v", left)
			_ = lab.Cleanup(prefix, stateRoot)
		}
	})
	l := lab.Start(t, lab.Options{Nodes: 3})
	prefix, stateRoot = l.Prefix(), lab.DefaultStateRoot

	t.Run("kubectl sees the nodes Ready", func(t *testing.T) { testKubectl(t, l) })
	t.Run("NodePort through kube-proxy on every node", func(t *testing.T) { testNodePort(t, l) })
	t.Run("load-balancer IP through kube-proxy", func(t *testing.T) { testLoadBalancerIP(t, l) })
	t.Run("FRR answers the nodes on port 179", func(t *testing.T) { testRouter(t, l) })
	t.Run("deleting a pod stops it", func(t *testing.T) { testDeletePod(t, l) })
}

func testKubectl(t *testing.T, l *lab.Lab) {
	out, err := exec.Command("kubectl", "--kubeconfig", l.Kubeconfig(), "get", "nodes", "--no-headers").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get nodes: %v\n%s", err, out)
	}
	t.Logf("kubectl get nodes:\n%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(l.Nodes()) {
		t.Fatalf("want %d nodes, got %d lines", len(l.Nodes()), len(lines))
	}
	for _, line := range lines {
		if f := strings.Fields(line); len(f) < 2 || f[1] != "Ready" {
			t.Errorf("node not Ready: %q", line)
		}
	}
	// barelb's CRDs are installed.
	if out, err := exec.Command("kubectl", "--kubeconfig", l.Kubeconfig(), "get", "ipaddresspools", "-A").CombinedOutput(); err != nil {
		t.Errorf("kubectl get ipaddresspools: %v\n%s", err, out)
	}
}

// backends creates pods labelled app=NAME, the i-th on node nodes[i].
func backends(t *testing.T, l *lab.Lab, app string, nodes ...string) []string {
	t.Helper()
	ctx := context.Background()
	var names []string
	for i, node := range nodes {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", app, i), Namespace: "default",
				Labels: map[string]string{"app": app, lab.RunLabel: "true"}},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{corev1.LabelHostname: node},
				Containers: []corev1.Container{{Name: "web", Image: "lab/podserver",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
			},
		}
		if err := l.Client().Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		names = append(names, pod.Name)
	}
	return names
}

func service(t *testing.T, l *lab.Lab, name, app string, typ corev1.ServiceType) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if err := l.Client().Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	return svc
}

// waitEndpoints waits until the Service's EndpointSlices list n ready
// endpoints.
func waitEndpoints(t *testing.T, l *lab.Lab, svc string, n int) {
	t.Helper()
	start := time.Now()
	ready := 0
	for time.Since(start) < 30*time.Second {
		var slices discoveryv1.EndpointSliceList
		if err := l.Client().List(context.Background(), &slices, client.InNamespace("default"),
			client.MatchingLabels{discoveryv1.LabelServiceName: svc}); err != nil {
			t.Fatal(err)
		}
		ready = 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		if ready == n {
			t.Logf("EndpointSlices of %s list %d ready endpoints after %v", svc, n, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("EndpointSlices of %s: %d ready endpoints, want %d", svc, ready, n)
}

// curlAll curls url from the client tries times and returns the answers
// by count.
func curlAll(t *testing.T, l *lab.Lab, url string, tries int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < tries; i++ {
		out, err := l.Exec(context.Background(), "client", "curl", "-sS", "--max-time", "2", url)
		if err != nil {
			seen["error: "+strings.TrimSpace(string(out))]++
			continue
		}
		seen[strings.TrimSpace(string(out))]++
	}
	return seen
}

func checkAnswers(t *testing.T, what string, seen map[string]int, names []string) {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for answer := range seen {
		if !want[answer] {
			t.Errorf("%s: unexpected answer %q (all: %v)", what, answer, seen)
		}
	}
}

func testNodePort(t *testing.T, l *lab.Lab) {
	names := backends(t, l, "web", "node1", "node2", "node1")
	svc := service(t, l, "web", "web", corev1.ServiceTypeNodePort)
	waitEndpoints(t, l, "web", len(names))
	port := svc.Spec.Ports[0].NodePort
	all := map[string]int{}
	for _, n := range l.Nodes() {
		url := fmt.Sprintf("http://%s:%d/", n.Addr(lab.SegmentLAN, 4), port)
		seen := curlAll(t, l, url, 15)
		t.Logf("%s: %v", url, seen)
		checkAnswers(t, url, seen, names)
		for k, v := range seen {
			all[k] += v
		}
	}
	for _, n := range names {
		if all[n] == 0 {
			t.Errorf("backend %s never answered: %v", n, all)
		}
	}
}

func testLoadBalancerIP(t *testing.T, l *lab.Lab) {
	names := backends(t, l, "lb", "node2", "node3")
	svc := service(t, l, "lb", "lb", corev1.ServiceTypeLoadBalancer)
	waitEndpoints(t, l, "lb", len(names))
	const vip = "198.51.100.200"
	patch := client.MergeFrom(svc.DeepCopy())
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip}}
	if err := l.Client().Status().Patch(context.Background(), svc, patch); err != nil {
		t.Fatal(err)
	}
	node := l.Nodes()[0]
	if out, err := l.Exec(context.Background(), "client", "ip", "neigh", "replace", vip,
		"lladdr", node.MAC(lab.SegmentLAN), "dev", "eth0", "nud", "permanent"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// kube-proxy installs the rule shortly after the status changes.
	url := "http://" + vip + "/"
	start := time.Now()
	for {
		out, err := l.Exec(context.Background(), "client", "curl", "-sS", "--max-time", "1", url)
		if err == nil {
			t.Logf("first answer through %s after %v: %s", vip, time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("no answer through %s via %s: %v %s", vip, node.Name, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := curlAll(t, l, url, 15)
	t.Logf("%s via %s: %v", url, node.Name, seen)
	checkAnswers(t, url, seen, names)
	for _, n := range names {
		if seen[n] == 0 {
			t.Errorf("backend %s never answered: %v", n, seen)
		}
	}
}

func testRouter(t *testing.T, l *lab.Lab) {
	router := l.Router()
	for _, n := range l.Nodes() {
		for _, family := range []int{4, 6} {
			addr := net.JoinHostPort(router.Addr(lab.SegmentRouter, family).String(), "179")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err := l.DialContext(ctx, n.Name, "tcp", addr)
			cancel()
			if err != nil {
				t.Errorf("%s cannot reach bgpd at %s: %v", n.Name, addr, err)
				continue
			}
			c.Close()
		}
	}
	out, err := l.Vtysh(context.Background(), "show running-config")
	if err != nil {
		t.Fatalf("vtysh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "router bgp 64500") {
		t.Errorf("FRR does not run AS 64500:\n%s", out)
	}
}

func testDeletePod(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	names := backends(t, l, "gone", "node3")
	pod := &corev1.Pod{}
	key := client.ObjectKey{Namespace: "default", Name: names[0]}
	start := time.Now()
	for {
		if err := l.Client().Get(ctx, key, pod); err != nil {
			t.Fatal(err)
		}
		if pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("pod not running: %+v", pod.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("pod running with IP %s after %v", pod.Status.PodIP, time.Since(start).Round(time.Millisecond))
	if err := l.Client().Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for {
		err := l.Client().Get(ctx, key, &corev1.Pod{})
		if client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		if err != nil {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("pod still there")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("pod gone after %v", time.Since(start).Round(time.Millisecond))
	if _, err := l.Exec(ctx, "node3", "ping", "-c1", "-W1", pod.Status.PodIP); err == nil {
		t.Errorf("%s still answers", pod.Status.PodIP)
	}
}
