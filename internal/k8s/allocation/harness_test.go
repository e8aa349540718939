package allocation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/metrics"
	"github.com/barelb/barelb/internal/testenv"
)

const barelbNamespace = "barelb-system"

// cluster is a real API server with the allocation controllers running
// in-process, restartable.
type cluster struct {
	t        *testing.T
	env      *testenv.Env
	c        client.Client
	replicas []*replica
	lbClass  string
	// leaderElect runs replicas that elect a leader, as in production.
	leaderElect bool
}

// replica is one controller manager running in this process.
type replica struct {
	stop    context.CancelFunc
	done    chan struct{}
	metrics *metrics.Controller
}

// startCluster starts an API server and controller replicas; with more
// than one, they elect a leader as in production.
func startCluster(t *testing.T, replicas int) *cluster {
	t.Helper()
	env := testenv.Start(t, testenv.Options{APIServerFlags: map[string]string{
		// Dual-stack, so that RequireDualStack Services can be created.
		"service-cluster-ip-range": "10.0.0.0/16,fd00:10::/108",
	}})
	cl := &cluster{t: t, env: env, c: env.Client, leaderElect: replicas > 1}
	cl.createNamespace(barelbNamespace, nil)
	for i := 0; i < replicas; i++ {
		cl.startController()
	}
	t.Cleanup(cl.stopController)
	return cl
}

func (cl *cluster) startController() {
	cl.t.Helper()
	// The controller is restarted within one process, which the options
	// allow.
	opts := cl.env.ManagerOptions(zap.New(zap.UseDevMode(true), zap.WriteTo(testWriter{cl.t})))
	if cl.leaderElect {
		// Short timers so that a stopped leader is replaced quickly.
		opts.LeaderElection, opts.LeaderElectionID, opts.LeaderElectionNamespace = true, "barelb-controller", barelbNamespace
		opts.LeaderElectionReleaseOnCancel = true
		opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod = ptr.To(2*time.Second), ptr.To(1500*time.Millisecond), ptr.To(200*time.Millisecond)
	}
	mgr, err := ctrl.NewManager(cl.env.Config, opts)
	if err != nil {
		cl.t.Fatalf("creating manager: %v", err)
	}
	m, err := metrics.NewController(prometheus.NewRegistry())
	if err != nil {
		cl.t.Fatal(err)
	}
	if err := Setup(mgr, Options{Namespace: barelbNamespace, LoadBalancerClass: cl.lbClass, Metrics: m, PoolStatusDelay: 50 * time.Millisecond}); err != nil {
		cl.t.Fatalf("setting up: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{stop: cancel, done: make(chan struct{}), metrics: m}
	t := cl.t
	go func() {
		defer close(r.done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	cl.replicas = append(cl.replicas, r)
}

// stopController stops every replica.
func (cl *cluster) stopController() {
	for _, r := range cl.replicas {
		r.stop()
		<-r.done
	}
	cl.replicas = nil
}

// restartOldest stops the longest-running replica, the likely leader, and
// starts a new one.
func (cl *cluster) restartOldest() {
	r := cl.replicas[0]
	r.stop()
	<-r.done
	cl.replicas = cl.replicas[1:]
	cl.startController()
}

func (cl *cluster) restartController() {
	cl.stopController()
	cl.startController()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (cl *cluster) createNamespace(name string, labels map[string]string) {
	cl.t.Helper()
	err := cl.c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		cl.t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// pool creates an IPAddressPool in barelb's namespace serving only the
// given test namespace, so that tests sharing the API server never take
// each other's addresses.
func (cl *cluster) pool(name, testNS string, mutate func(*barelbv1beta1.IPAddressPoolSpec), addresses ...string) *barelbv1beta1.IPAddressPool {
	cl.t.Helper()
	p := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: barelbNamespace}}
	for _, a := range addresses {
		p.Spec.Addresses = append(p.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	p.Spec.ServiceAllocation = &barelbv1beta1.ServiceAllocation{Namespaces: []string{testNS}}
	if mutate != nil {
		mutate(&p.Spec)
	}
	if err := cl.c.Create(context.Background(), p); err != nil {
		cl.t.Fatalf("creating pool %s: %v", name, err)
	}
	return p
}

// updatePool edits a pool's spec, retrying when the controller's status
// write got there first.
func (cl *cluster) updatePool(name string, mutate func(*barelbv1beta1.IPAddressPoolSpec)) {
	cl.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var p barelbv1beta1.IPAddressPool
		if err := cl.c.Get(context.Background(), types.NamespacedName{Namespace: barelbNamespace, Name: name}, &p); err != nil {
			return err
		}
		mutate(&p.Spec)
		return cl.c.Update(context.Background(), &p)
	})
	if err != nil {
		cl.t.Fatalf("updating pool %s: %v", name, err)
	}
}

// service creates a LoadBalancer Service with one TCP port.
func (cl *cluster) service(ns, name string, mutate func(*corev1.Service)) *corev1.Service {
	cl.t.Helper()
	noNodePorts := false
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: &noNodePorts,
			Selector:                      map[string]string{"app": name},
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if mutate != nil {
		mutate(svc)
	}
	if err := cl.c.Create(context.Background(), svc); err != nil {
		cl.t.Fatalf("creating service %s/%s: %v", ns, name, err)
	}
	return svc
}

func (cl *cluster) get(ns, name string) *corev1.Service {
	cl.t.Helper()
	var svc corev1.Service
	if err := cl.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &svc); err != nil {
		cl.t.Fatalf("reading service %s/%s: %v", ns, name, err)
	}
	return &svc
}

// updateService edits a Service, retrying when the controller's status
// write got there first.
func (cl *cluster) updateService(ns, name string, mutate func(*corev1.Service)) {
	cl.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc := cl.get(ns, name)
		mutate(svc)
		return cl.c.Update(context.Background(), svc)
	})
	if err != nil {
		cl.t.Fatalf("updating service %s/%s: %v", ns, name, err)
	}
}

func ips(svc *corev1.Service) []string {
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// eventually polls cond until it returns "" or time runs out, then fails
// with its last complaint.
func (cl *cluster) eventually(what string, cond func() string) {
	cl.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl.t.Fatalf("%s: %s", what, last)
}

// waitPoolsInForce waits until the controller has taken each pool into
// force (its status names the addresses): a Service created before then
// is allocated from the pools the controller knew, which is right, but
// not what a test of the pools' order means.
func (cl *cluster) waitPoolsInForce(names ...string) {
	cl.t.Helper()
	for _, name := range names {
		cl.eventually("pool "+name+" in force", func() string {
			var p barelbv1beta1.IPAddressPool
			if err := cl.c.Get(context.Background(), client.ObjectKey{Namespace: barelbNamespace, Name: name}, &p); err != nil {
				return err.Error()
			}
			if len(p.Status.AddressesInForce) == 0 {
				return "no addresses in force yet"
			}
			return ""
		})
	}
}

// waitIPs waits until the Service's addresses are exactly want (none when
// want is empty).
func (cl *cluster) waitIPs(ns, name string, want ...string) *corev1.Service {
	cl.t.Helper()
	var svc *corev1.Service
	cl.eventually(fmt.Sprintf("addresses of %s/%s", ns, name), func() string {
		svc = cl.get(ns, name)
		if got := ips(svc); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
		return ""
	})
	return svc
}

// waitEvent waits for an Event on the Service with the reason whose
// message contains every fragment.
func (cl *cluster) waitEvent(ns, name, reason string, fragments ...string) {
	cl.t.Helper()
	cl.eventually(fmt.Sprintf("event %s on %s/%s", reason, ns, name), func() string {
		var events corev1.EventList
		if err := cl.c.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			if e.InvolvedObject.Name != name || e.InvolvedObject.Kind != "Service" {
				continue
			}
			seen = append(seen, e.Reason+": "+e.Message)
			if e.Reason != reason {
				continue
			}
			ok := true
			for _, f := range fragments {
				ok = ok && strings.Contains(e.Message, f)
			}
			if ok {
				return ""
			}
		}
		return fmt.Sprintf("seen only %q", seen)
	})
}

// stayPending checks that the Service has no address for a while.
func (cl *cluster) stayPending(ns, name string) {
	cl.t.Helper()
	time.Sleep(500 * time.Millisecond)
	if got := ips(cl.get(ns, name)); len(got) > 0 {
		cl.t.Fatalf("%s/%s got %v, want none", ns, name, got)
	}
}

// waitServicesWaiting waits until the first replica's
// barelb_allocator_services_waiting gauge (what the
// ServicesWaitingForAddress alert reads) says want.
func (cl *cluster) waitServicesWaiting(want float64) {
	cl.t.Helper()
	cl.eventually(fmt.Sprintf("%v Services waiting for an address", want), func() string {
		var m dto.Metric
		if err := cl.replicas[0].metrics.ServicesWaiting.Write(&m); err != nil {
			return err.Error()
		}
		if got := m.GetGauge().GetValue(); got != want {
			return fmt.Sprintf("barelb_allocator_services_waiting %v", got)
		}
		return ""
	})
}
