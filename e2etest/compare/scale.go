package compare

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/barelb/barelb/e2etest/lab"
)

// scaleNamespace holds the allocation scenario's Services.
const scaleNamespace = "scale"

// scale measures, against the lab's API server with kube-proxy stopped on
// every node (its iptables syncs of thousands of Services are not what is
// measured, and cost both the same):
//   - allocation: Services pending Services while as many are assigned,
//     until all have an address, and the plain client's ceiling (the same
//     number of status writes, 16 at a time, unthrottled);
//   - memory of the controller and node1's speaker with 2×Services;
//   - a controller restart: until it is ready, until a Service created
//     right after has its address, and how many addresses changed.
func (r *run) scale(earlier []string) {
	n := r.size.Services
	for _, node := range r.l.Nodes() {
		if err := r.l.Stop(node.Name, lab.ComponentKubeProxy); err != nil {
			r.fatalf("%v", err)
		}
	}
	// The earlier scenarios' pools would take Services too.
	for _, name := range earlier {
		_ = r.l.Clientset().CoreV1().Services("default").Delete(r.ctx, name, metav1.DeleteOptions{})
	}
	if err := remove(r.ctx, r.l, append(l2Objects(r.impl), bgpObjects(r.impl)...)); err != nil {
		r.fatalf("%v", err)
	}
	if err := apply(r.ctx, r.l, scaleObjects(r.impl)); err != nil {
		r.fatalf("%v", err)
	}
	cs := unlimitedClientset(r, r.l.RESTConfig())
	if _, err := cs.CoreV1().Namespaces().Create(r.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scaleNamespace}}, metav1.CreateOptions{}); err != nil {
		r.fatalf("%v", err)
	}
	create := func(from, to int) {
		if err := lab.Parallel(to-from, 16, func(i int) error {
			_, err := cs.CoreV1().Services(scaleNamespace).Create(r.ctx, scaleService(from+i), metav1.CreateOptions{})
			return err
		}); err != nil {
			r.fatalf("creating Services: %v", err)
		}
	}
	// The first half, assigned by the running controller.
	w := watchAssigned(r, cs)
	create(0, n)
	w.wait(r, n, 30*time.Minute)
	w.stop()
	if err := r.l.StopProcess(r.impl.ControllerKey(), 10*time.Second); err != nil {
		r.fatalf("%v", err)
	}
	create(n, 2*n)

	// The ceiling: the same writes from a plain client, undone after.
	w = watchAssigned(r, cs)
	began := time.Now()
	patch := func(i int, ip string) error {
		var p string
		if ip == "" {
			p = fmt.Sprintf(`{"metadata":{"annotations":{%q:null}},"status":{"loadBalancer":{"ingress":null}}}`, r.impl.PoolAnnotation())
		} else {
			p = fmt.Sprintf(`{"metadata":{"annotations":{%q:"scale"}},"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, r.impl.PoolAnnotation(), ip)
		}
		_, err := cs.CoreV1().Services(scaleNamespace).Patch(r.ctx, scaleName(n+i), types.MergePatchType, []byte(p), metav1.PatchOptions{}, "status")
		return err
	}
	if err := lab.Parallel(n, 16, func(i int) error { return patch(i, fmt.Sprintf("100.64.%d.%d", i/256, i%256)) }); err != nil {
		r.fatalf("the plain client's writes: %v", err)
	}
	w.wait(r, 2*n, 10*time.Minute)
	ceiling := time.Since(began)
	w.stop()
	if err := lab.Parallel(n, 16, func(i int) error { return patch(i, "") }); err != nil {
		r.fatalf("undoing the plain client's writes: %v", err)
	}

	w = watchAssigned(r, cs)
	began = time.Now()
	if err := r.impl.StartController(r.l); err != nil {
		r.fatalf("%v", err)
	}
	w.wait(r, 2*n, 30*time.Minute)
	allocation := time.Since(began)
	w.stop()
	row := fmt.Sprintf("allocation: %d pending with %d assigned, /16 pool", n, n)
	r.res.set(r.name(), row+": all assigned (s)", allocation.Seconds())
	r.res.set(r.name(), row+": plain client's ceiling, same writes (s)", ceiling.Seconds())
	r.tb.Logf("%s: %d Services assigned in %v (plain client: %v)", r.name(), n, allocation.Round(time.Millisecond), ceiling.Round(time.Millisecond))

	// Memory with 2n Services (each speaker has seen them all).
	time.Sleep(5 * time.Second)
	r.memory(fmt.Sprintf("memory at %d Services", 2*n), r.impl.ControllerKey(), "controller")
	r.memory(fmt.Sprintf("memory at %d Services", 2*n), r.impl.SpeakerKey(r.l.Nodes()[0].Name), "speaker")

	// Restart with 2n assigned.
	before := addresses(r, cs)
	if err := r.l.StopProcess(r.impl.ControllerKey(), 10*time.Second); err != nil {
		r.fatalf("%v", err)
	}
	began = time.Now()
	if err := r.impl.StartController(r.l); err != nil {
		r.fatalf("%v", err)
	}
	if _, err := cs.CoreV1().Services(scaleNamespace).Create(r.ctx, scaleService(2*n), metav1.CreateOptions{}); err != nil {
		r.fatalf("%v", err)
	}
	if err := r.impl.WaitController(r.ctx, r.l); err != nil {
		r.fatalf("%v", err)
	}
	ready := time.Since(began)
	lab.Eventually(r.tb, 30*time.Minute, r.name()+": the Service created after the restart assigned", func() (bool, string) {
		svc, err := cs.CoreV1().Services(scaleNamespace).Get(r.ctx, scaleName(2*n), metav1.GetOptions{})
		return err == nil && len(svc.Status.LoadBalancer.Ingress) > 0, fmt.Sprint(err)
	})
	newAssigned := time.Since(began)
	time.Sleep(5 * time.Second)
	changed := 0
	for name, ip := range addresses(r, cs) {
		if old, ok := before[name]; ok && old != ip {
			changed++
		}
	}
	row = fmt.Sprintf("controller restart with %d assigned", 2*n)
	r.res.set(r.name(), row+": ready (s)", ready.Seconds())
	r.res.set(r.name(), row+": a new Service assigned (s)", newAssigned.Seconds())
	r.res.set(r.name(), row+": addresses changed", float64(changed))
}

func (r *run) memory(row, key, what string) {
	pid, err := r.l.ProcessPID(key)
	if err != nil {
		r.fatalf("%v", err)
	}
	m, err := lab.ProcessMemory(pid)
	if err != nil {
		r.fatalf("%v", err)
	}
	r.res.set(r.name(), row+": "+what+" RssAnon (MiB)", m.Anon)
	r.res.set(r.name(), row+": "+what+" peak VmHWM (MiB)", m.HWM)
}

func scaleName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// scaleService is an IPv4 LoadBalancer Service without node ports (the
// default range holds 2,768) or endpoints.
func scaleService(i int) *corev1.Service {
	noNodePorts := false
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: scaleName(i)},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: &noNodePorts,
			Selector:                      map[string]string{"app": fmt.Sprintf("app-%d", i)},
			Ports:                         []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
}

func unlimitedClientset(r *run, cfg *rest.Config) *kubernetes.Clientset {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		r.fatalf("%v", err)
	}
	return cs
}

// assignedWatch counts, from one watch, the Services of scaleNamespace
// that have an address.
type assignedWatch struct {
	w        watch.Interface
	mu       sync.Mutex
	assigned map[string]bool
	changed  chan struct{}
	done     chan struct{}
}

func watchAssigned(r *run, cs *kubernetes.Clientset) *assignedWatch {
	ctx := context.Background()
	list, err := cs.CoreV1().Services(scaleNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		r.fatalf("%v", err)
	}
	w, err := cs.CoreV1().Services(scaleNamespace).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		r.fatalf("%v", err)
	}
	aw := &assignedWatch{w: w, assigned: map[string]bool{}, changed: make(chan struct{}, 1), done: make(chan struct{})}
	for i := range list.Items {
		if len(list.Items[i].Status.LoadBalancer.Ingress) > 0 {
			aw.assigned[list.Items[i].Name] = true
		}
	}
	go func() {
		defer close(aw.done)
		for ev := range w.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			aw.mu.Lock()
			if len(svc.Status.LoadBalancer.Ingress) > 0 && ev.Type != watch.Deleted {
				aw.assigned[svc.Name] = true
			} else {
				delete(aw.assigned, svc.Name)
			}
			aw.mu.Unlock()
			select {
			case aw.changed <- struct{}{}:
			default:
			}
		}
	}()
	return aw
}

// wait returns once n Services have an address; it fails after limit.
func (aw *assignedWatch) wait(r *run, n int, limit time.Duration) {
	deadline := time.After(limit)
	for {
		aw.mu.Lock()
		got := len(aw.assigned)
		aw.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-aw.changed:
		case <-time.After(time.Second):
		case <-deadline:
			r.fatalf("only %d of %d Services have an address after %v", got, n, limit)
		}
	}
}

func (aw *assignedWatch) stop() {
	aw.w.Stop()
	<-aw.done
}

func addresses(r *run, cs *kubernetes.Clientset) map[string]string {
	list, err := cs.CoreV1().Services(scaleNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		r.fatalf("%v", err)
	}
	out := map[string]string{}
	for _, svc := range list.Items {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			out[svc.Name] += in.IP + " "
		}
	}
	return out
}
