package scale

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/testenv"
)

const (
	barelbNamespace = "barelb-system"
	benchNamespace  = "scale"
	workers         = 16
)

func servicesWanted() int {
	if n, err := strconv.Atoi(os.Getenv("BARELB_SCALE_SERVICES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// BenchmarkAllocation measures, in one run against one API server:
//   - ceiling: a plain client writing the status of every Service, 16 at a time;
//   - allocation: the controller binary giving every pending Service an address;
//   - memory: the controller's resident memory with every Service assigned;
//   - cold start: a new controller process until it is ready and has
//     reconciled every Service, and how many addresses changed (must be 0).
//
// Run it once: go test -run=^$ -bench=Allocation -benchtime=1x ./e2etest/scale/
func BenchmarkAllocation(b *testing.B) {
	n := servicesWanted()
	ctx := context.Background()
	env, bin, kubeconfig, cs := controllerBench(b)

	began := time.Now()
	parallel(b, n, func(i int) error {
		_, err := cs.CoreV1().Services(benchNamespace).Create(ctx, service(i), metav1.CreateOptions{})
		return err
	})
	b.Logf("created %d Services in %v", n, time.Since(began).Round(time.Millisecond))

	b.ResetTimer()
	// The ceiling: the same status writes from a plain client.
	w := watchServices(b, cs, n, "an address", hasAddress)
	began = time.Now()
	parallel(b, n, func(i int) error { return writeStatus(ctx, cs, i, benchAddress(i).String(), "ceiling") })
	w.waitAll(b, 5*time.Minute)
	ceiling := float64(n) / time.Since(began).Seconds()
	w.stop()
	parallel(b, n, func(i int) error { return writeStatus(ctx, cs, i, "", "") })

	pool := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "scale", Namespace: barelbNamespace}}
	pool.Spec.Addresses = []barelbv1beta1.AddressRange{"198.18.0.0/16"} // RFC 2544's benchmarking range; no traffic is sent
	if err := env.Client.Create(ctx, pool); err != nil {
		b.Fatal(err)
	}

	w = watchServices(b, cs, n, "an address", hasAddress)
	began = time.Now()
	controller := startController(b, filepath.Join(bin, "controller"), kubeconfig)
	w.waitAll(b, 10*time.Minute)
	allocation := float64(n) / time.Since(began).Seconds()
	w.stop()
	rss := controller.residentMiB(b)
	before := addresses(b, cs)
	if dup := duplicates(before); dup != "" {
		b.Fatalf("an address is held twice: %s", dup)
	}

	// Cold start with every Service assigned.
	controller.stop(b)
	w = watchServices(b, cs, n, "an address", hasAddress)
	began = time.Now()
	controller = startController(b, filepath.Join(bin, "controller"), kubeconfig)
	controller.waitVerified(b, n, 5*time.Minute)
	coldStart := time.Since(began)
	writes := w.writes()
	w.stop()
	controller.stop(b)
	changed := 0
	for key, ip := range addresses(b, cs) {
		if before[key] != ip {
			changed++
		}
	}
	b.StopTimer()

	b.ReportMetric(allocation, "services/s")
	b.ReportMetric(ceiling, "ceiling-writes/s")
	b.ReportMetric(100*allocation/ceiling, "%-of-ceiling")
	b.ReportMetric(rss, "controller-RSS-MiB")
	b.ReportMetric(coldStart.Seconds(), "cold-start-s")
	b.ReportMetric(float64(changed), "addresses-changed")
	b.ReportMetric(float64(writes), "writes-during-cold-start")
	b.Logf("%d Services: controller %.0f/s, plain client %.0f/s (%.0f%%), controller RSS %.0f MiB, cold start %v with %d addresses changed",
		n, allocation, ceiling, 100*allocation/ceiling, rss, coldStart.Round(time.Millisecond), changed)
	if changed > 0 {
		b.Errorf("%d addresses changed across the cold start", changed)
	}
}

// controllerBench starts the control plane of the controller's
// benchmarks (a /16 of Service IPs, so that 10,000 Services fit), builds
// the controller into bin and makes the two namespaces.
func controllerBench(b *testing.B) (env *testenv.Env, bin, kubeconfig string, cs *kubernetes.Clientset) {
	ctx := context.Background()
	env = testenv.Start(b, testenv.Options{APIServerFlags: map[string]string{
		"service-cluster-ip-range": "10.0.0.0/16",
	}})
	bin = b.TempDir()
	if err := testenv.BuildPrograms(ctx, bin, "./controller"); err != nil {
		b.Fatal(err)
	}
	kubeconfig = env.WriteKubeconfig(b)
	cs = unlimitedClientset(b, env.Config)
	for _, ns := range []string{barelbNamespace, benchNamespace} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return env, bin, kubeconfig, cs
}

func unlimitedClientset(b *testing.B, cfg *rest.Config) *kubernetes.Clientset {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0 // no client-side limit: this is the ceiling
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

func service(i int) *corev1.Service {
	noNodePorts := false
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%05d", i)},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: &noNodePorts,
			Selector:                      map[string]string{"app": fmt.Sprintf("app-%d", i)},
			Ports:                         []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
}

func benchAddress(i int) netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32([]byte{198, 18, 0, 0})+uint32(i))
	return netip.AddrFrom4(a)
}

// writeStatus is the write the controller makes for a Service: status and
// pool annotation in one merge patch of the status subresource.
func writeStatus(ctx context.Context, cs *kubernetes.Clientset, i int, ip, pool string) error {
	var patch string
	if ip == "" {
		patch = `{"metadata":{"annotations":{"barelb.io/ip-allocated-from-pool":null}},"status":{"loadBalancer":{"ingress":null}}}`
	} else {
		patch = fmt.Sprintf(`{"metadata":{"annotations":{"barelb.io/ip-allocated-from-pool":%q}},"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, pool, ip)
	}
	_, err := cs.CoreV1().Services(benchNamespace).Patch(ctx, fmt.Sprintf("svc-%05d", i), types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	return err
}

// parallel runs f for 0..n-1 on 16 workers and fails on the first error.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	if err := lab.Parallel(n, workers, f); err != nil {
		b.Fatal(err)
	}
}

func addresses(b *testing.B, cs *kubernetes.Clientset) map[string]string {
	list, err := cs.CoreV1().Services(benchNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]string{}
	for _, svc := range list.Items {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			out[svc.Name] += in.IP + " "
		}
	}
	return out
}

func duplicates(byService map[string]string) string {
	holder := map[string]string{}
	for svc, ips := range byService {
		for _, ip := range strings.Fields(ips) {
			if other, ok := holder[ip]; ok {
				return fmt.Sprintf("%s by %s and %s", ip, other, svc)
			}
			holder[ip] = svc
		}
	}
	return ""
}

// controllerProcess is the controller binary under measurement.
type controllerProcess struct {
	cmd     *exec.Cmd
	metrics string
	probes  string
	log     string
}

func startController(b *testing.B, path, kubeconfig string) *controllerProcess {
	metrics, probes := freePort(b), freePort(b)
	logPath := filepath.Join(b.TempDir(), "controller.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"--kubeconfig=" + kubeconfig, "--namespace=" + barelbNamespace, "--log-level=error",
		"--metrics-bind-address=" + metrics, "--health-probe-bind-address=" + probes, "--webhook-port=0"}
	args = append(args, strings.Fields(os.Getenv("BARELB_CONTROLLER_ARGS"))...)
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &controllerProcess{cmd: cmd, metrics: "http://" + metrics + "/metrics", probes: "http://" + probes, log: logPath}
	b.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		logFile.Close()
	})
	return p
}

func (p *controllerProcess) stop(b *testing.B) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		out, _ := os.ReadFile(p.log)
		b.Fatalf("controller exited with %v:\n%s", err, out)
	}
}

func (p *controllerProcess) residentMiB(b *testing.B) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// waitVerified waits until the controller is ready and has reconciled
// every Service once, read from its own metrics.
func (p *controllerProcess) waitVerified(b *testing.B, n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if status(p.probes+"/readyz") == http.StatusOK {
			reconciled, depth := p.scrape()
			if reconciled >= float64(n) && depth == 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _ := os.ReadFile(p.log)
	b.Fatalf("controller did not verify %d Services within %v:\n%s", n, limit, out)
}

func (p *controllerProcess) scrape() (reconciled, depth float64) {
	resp, err := http.Get(p.metrics)
	if err != nil {
		return 0, -1
	}
	defer resp.Body.Close()
	depth = -1
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch {
		case strings.HasPrefix(line, `controller_runtime_reconcile_total{controller="service-allocation"`):
			reconciled += v
		case strings.HasPrefix(line, `workqueue_depth{controller="service-allocation"`):
			depth = v
		}
	}
	return reconciled, depth
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func freePort(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
