package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/app"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
	"github.com/barelb/barelb/internal/testenv"
)

const namespace = app.DefaultNamespace

// TestMain gives controller-runtime and client-go, which envtest and the
// in-process manager log through, a logger of errors only, rather than none
// (controller-runtime complains after 30s) or every message.
func TestMain(m *testing.M) {
	o := app.DefaultOptions("0", "0")
	o.LogLevel, o.LogFormat = "error", "text"
	log, err := app.NewLogger(o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	crlog.SetLogger(log)
	klog.SetLogger(log) // client-go's reflectors log through klog
	os.Exit(m.Run())
}

// TestPrograms builds the real controller and speaker, runs them against a
// test API server and checks what Kubernetes and Prometheus rely on: the
// probes, the metrics, the Lease and a clean stop on SIGTERM. The subtests
// share one API server, as each costs seconds to start.
func TestPrograms(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both programs and starts an API server")
	}
	bin := t.TempDir()
	buildCtx, cancelBuild := context.WithCancel(context.Background())
	t.Cleanup(cancelBuild)
	built := make(chan error, 1)
	began := time.Now()
	go func() { built <- testenv.BuildPrograms(buildCtx, bin, "./controller", "./speaker") }() // while the API server starts

	env := testenv.Start(t, testenv.Options{})
	t.Logf("API server started in %v", time.Since(began).Round(time.Millisecond))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", namespace, err)
	}
	kubeconfig := env.WriteKubeconfig(t)
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	t.Logf("programs built and API server started in %v", time.Since(began).Round(time.Millisecond))

	t.Run("controller", func(t *testing.T) {
		t.Parallel()
		testController(t, env, filepath.Join(bin, "controller"), kubeconfig)
	})
	t.Run("speaker", func(t *testing.T) {
		t.Parallel()
		testSpeaker(t, filepath.Join(bin, "speaker"), kubeconfig)
	})
	t.Run("manager caches barelb objects from its namespace only", func(t *testing.T) {
		t.Parallel()
		testNamespacedCache(t, env)
	})
	t.Run("speaker's cache keeps only what the announcer reads", func(t *testing.T) {
		t.Parallel()
		testTrimmedCache(t, env)
	})
}

func testTrimmedCache(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "trimmed", Namespace: "default",
			Annotations: map[string]string{"other": "x"}},
		// Another load-balancer class: the controller tested alongside
		// leaves it alone. (It clears the pool annotation of a Service it
		// does not serve, so the annotation kept by the transform is
		// checked by the announcer's own TestCacheTransformsKeepWhatReadReads.)
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("example.com/other"),
			Ports: []corev1.ServicePort{{Port: 80}}},
	}
	status := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{Name: "trimmed", Namespace: namespace,
		Labels: map[string]string{barelbv1beta1.LabelServiceName: "trimmed"}}}
	for _, obj := range []client.Object{svc, status} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	o := app.DefaultOptions("0", "0")
	o.Namespace = namespace
	mgr, err := app.NewManager(env.Config, o, app.WithCacheTransforms(l2announcer.CacheTransforms()))
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("the cache did not start")
	}
	c := mgr.GetClient()
	var cached corev1.Service
	if err := c.Get(ctx, client.ObjectKeyFromObject(svc), &cached); err != nil {
		t.Fatal(err)
	}
	if len(cached.ManagedFields) > 0 || len(cached.Spec.Ports) > 0 || cached.Spec.Type != corev1.ServiceTypeLoadBalancer ||
		len(cached.Annotations) != 0 || cached.UID == "" {
		t.Errorf("cached Service not trimmed: %+v", cached)
	}
	var cachedStatus barelbv1beta1.ServiceL2Status
	if err := c.Get(ctx, client.ObjectKeyFromObject(status), &cachedStatus); err != nil {
		t.Fatal(err)
	}
	if len(cachedStatus.ManagedFields) > 0 || len(cachedStatus.Labels) > 0 {
		t.Errorf("cached ServiceL2Status not trimmed: %+v", cachedStatus.ObjectMeta)
	}
}

func testController(t *testing.T, env *testenv.Env, path, kubeconfig string) {
	ctx := context.Background()
	leader := startProgram(t, path, nil, "--kubeconfig="+kubeconfig, "--log-level=debug", "--webhook-port=0")
	leader.checkEndpoints(t)
	holder := waitForLeaseHolder(t, env, func(h string) bool { return h != "" })
	checkAllocation(t, env, leader)

	// A second replica must become ready while it stands by: readiness
	// must not wait for leadership, or a rolling update would stall.
	standby := startProgram(t, path, nil, "--kubeconfig="+kubeconfig, "--webhook-port=0")
	standby.waitReady(t)
	var lease coordinationv1.Lease
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: app.ControllerLeaseName}, &lease); err != nil {
		t.Fatal(err)
	}
	if got := deref(lease.Spec.HolderIdentity); got != holder {
		t.Fatalf("Lease holder changed from %q to %q while the leader ran", holder, got)
	}

	// The leader hands the Lease over on SIGTERM, so the standby takes it
	// without waiting for it to expire.
	leader.stop(t)
	start := time.Now()
	next := waitForLeaseHolder(t, env, func(h string) bool { return h != "" && h != holder })
	t.Logf("standby %s took the Lease %v after the leader stopped", next, time.Since(start).Round(time.Millisecond))
	// A leader stopped within milliseconds of winning may not have started
	// renewing yet, and client-go's elector then skips the release; let it
	// settle, as any real leader has.
	time.Sleep(time.Second)
	standby.stop(t)
	waitForLeaseHolder(t, env, func(h string) bool { return h == "" })
}

// checkAllocation gives the running controller a pool and a Service, and
// checks the Service gets its address and the metrics report it.
func checkAllocation(t *testing.T, env *testenv.Env, controller *process) {
	ctx := context.Background()
	pool := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "programs", Namespace: namespace}}
	pool.Spec.Addresses = []barelbv1beta1.AddressRange{"203.0.113.8/29"}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`barelb_allocator_addresses_in_use{family="ipv4",pool="programs"} 1`,
		`barelb_allocator_addresses_total{family="ipv4",pool="programs"} 8`,
		`controller_runtime_reconcile_time_seconds_count{controller="service-allocation"}`,
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc)
		_, body, _ := get(controller.metrics + "/metrics")
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
			}
		}
		if err == nil && len(svc.Status.LoadBalancer.Ingress) == 1 && svc.Status.LoadBalancer.Ingress[0].IP == "203.0.113.8" && missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Service status %+v (error %v); metric missing: %s", svc.Status.LoadBalancer, err, missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testSpeaker(t *testing.T, path, kubeconfig string) {
	_, port, _ := net.SplitHostPort(freeAddress(t))
	speaker := startProgram(t, path, []string{"NODE_NAME=worker-1"}, "--kubeconfig="+kubeconfig, "--log-format=text",
		"--memberlist-address=127.0.0.1", "--memberlist-port="+port, "--handover=0s")
	speaker.checkEndpoints(t)
	speaker.stop(t)
	if out := speaker.output(); !strings.Contains(out, "worker-1") {
		t.Errorf("the speaker's log does not name its node:\n%s", out)
	}
}

// testNamespacedCache checks NewManager's cache in this process: barelb
// objects come from the --namespace only, other kinds from everywhere.
func testNamespacedCache(t *testing.T, env *testenv.Env) {
	o := app.DefaultOptions("0", freeAddress(t))
	mgr, err := app.NewManager(env.Config, o, app.WithReadyAfterSync(&barelbv1beta1.IPAddressPool{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	// Ready means the cache is started and holds IPAddressPools.
	(&process{name: "manager", probes: "http://" + o.HealthProbeBindAddress}).waitReady(t)

	c := mgr.GetClient()
	if err := c.List(ctx, &barelbv1beta1.IPAddressPoolList{}, client.InNamespace(namespace)); err != nil {
		t.Errorf("listing IPAddressPools in %s: %v", namespace, err)
	}
	if err := c.List(ctx, &barelbv1beta1.IPAddressPoolList{}, client.InNamespace("default")); err == nil {
		t.Error("listing IPAddressPools in default succeeded; want the cache to refuse a namespace it does not hold")
	}
	if err := c.List(ctx, &corev1.ServiceList{}); err != nil {
		t.Errorf("listing Services in all namespaces: %v", err)
	}
}

func waitForLeaseHolder(t *testing.T, env *testenv.Env, ok func(holder string) bool) string {
	t.Helper()
	var (
		lease   coordinationv1.Lease
		lastErr error
	)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		lastErr = env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: app.ControllerLeaseName}, &lease)
		if lastErr == nil && ok(deref(lease.Spec.HolderIdentity)) {
			return deref(lease.Spec.HolderIdentity)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Lease %s/%s: holder %q, error %v", namespace, app.ControllerLeaseName, deref(lease.Spec.HolderIdentity), lastErr)
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// process is a program under test.
type process struct {
	name    string
	cmd     *exec.Cmd
	out     *testenv.SyncBuffer
	metrics string // base URLs
	probes  string
	exited  chan struct{} // nil for a manager in this process
	err     error         // valid once exited is closed
}

// startProgram runs path on free local ports and stops it when the test
// ends, logging its output if the test failed.
func startProgram(t *testing.T, path string, env []string, args ...string) *process {
	t.Helper()
	metrics, probes := freeAddress(t), freeAddress(t)
	args = append(args, "--metrics-bind-address="+metrics, "--health-probe-bind-address="+probes)
	p := &process{
		name:    filepath.Base(path),
		cmd:     exec.Command(path, args...),
		out:     &testenv.SyncBuffer{},
		metrics: "http://" + metrics,
		probes:  "http://" + probes,
		exited:  make(chan struct{}),
	}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.output())
		}
	})
	return p
}

func (p *process) output() string { return p.out.String() }

// waitReady waits for /readyz to answer 200.
func (p *process) waitReady(t *testing.T) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before it was ready: %v", p.name, p.err)
		default:
		}
		code, body, err := get(p.probes + "/readyz")
		if err == nil && code == http.StatusOK {
			t.Logf("%s ready after %v", p.name, time.Since(start).Round(time.Millisecond))
			return
		}
		last = fmt.Sprintf("status %d, body %q, error %v", code, body, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 60s: last /readyz: %s", p.name, last)
}

// checkEndpoints waits for readiness and checks the probes and metrics.
func (p *process) checkEndpoints(t *testing.T) {
	t.Helper()
	p.waitReady(t)
	if code, body, err := get(p.probes + "/readyz?verbose"); err != nil || code != http.StatusOK || !strings.Contains(body, "[+]caches-synced ok") {
		t.Errorf("/readyz?verbose: status %d, error %v, body:\n%s", code, err, body)
	}
	if code, body, err := get(p.probes + "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz: status %d, error %v, body %q", code, err, body)
	}
	code, body, err := get(p.metrics + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: status %d, error %v", code, err)
	}
	for _, want := range []string{"# TYPE rest_client_requests_total counter", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// stop sends SIGTERM and expects a clean exit within 10s.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
	start := time.Now()
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("%s exited after SIGTERM with %v", p.name, p.err)
		}
		t.Logf("%s stopped %v after SIGTERM", p.name, time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Errorf("%s still running 10s after SIGTERM", p.name)
	}
}

func get(url string) (int, string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// freeAddress returns a local address nothing listens on. Another process
// could take it before the program does; that has not been seen to happen.
func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	return addr
}
