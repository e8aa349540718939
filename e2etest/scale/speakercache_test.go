package scale

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/app"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/testenv"
)

// BenchmarkSpeakerCache measures what a cache keeps per Service announced
// by one node (live heap after a full GC, stores and indexes included):
// the Service as the controller leaves it, an EndpointSlice with one
// endpoint, a ServiceL2Status. It measures the speaker's cache,
// internal/k8s/servicecache (B/servicecache: the three records together),
// and for comparison controller-runtime's typed cache of each kind with the
// announcer's trimming transforms and without them. No speaker runs; only
// the caches are started.
//
//	go test -run=^$ -bench=SpeakerCache -benchtime=1x ./e2etest/scale/
func BenchmarkSpeakerCache(b *testing.B) {
	n := servicesWanted() / 4
	ctx := context.Background()
	env := testenv.Start(b, testenv.Options{APIServerFlags: map[string]string{"service-cluster-ip-range": "10.0.0.0/16"}})
	cs := unlimitedClientset(b, env.Config)
	for _, ns := range []string{barelbNamespace, benchNamespace} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	parallel(b, n, func(i int) error {
		if _, err := cs.CoreV1().Services(benchNamespace).Create(ctx, service(i), metav1.CreateOptions{}); err != nil {
			return err
		}
		if err := writeStatus(ctx, cs, i, benchAddress(i).String(), "scale"); err != nil {
			return err
		}
		name := fmt.Sprintf("svc-%05d", i)
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-x7k2p", Labels: map[string]string{
				discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{benchAddress(i).String()}, NodeName: ptr.To("node1"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: benchNamespace, Name: name + "-6d4cf56db6-abcde", UID: "0b3c2e4a-1f7d-4c55-9d3e-2a1b0c9d8e7f"}}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](80), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		if _, err := cs.DiscoveryV1().EndpointSlices(benchNamespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			return err
		}
		status := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{Name: "scale-" + name + "-0a1b2c3d", Namespace: barelbNamespace,
			Labels: map[string]string{barelbv1beta1.LabelServiceName: name, barelbv1beta1.LabelServiceNamespace: benchNamespace}}}
		if err := env.Client.Create(ctx, status); err != nil {
			return err
		}
		status.Status = barelbv1beta1.ServiceL2StatusStatus{Node: "node1", ServiceName: name, ServiceNamespace: benchNamespace,
			Addresses: []string{benchAddress(i).String()}, Interfaces: []barelbv1beta1.InterfaceInfo{{Name: "eth0"}}}
		return env.Client.Status().Update(ctx, status)
	})
	kinds := []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}, &barelbv1beta1.ServiceL2Status{}}
	b.ResetTimer()
	{
		before := liveHeap()
		sc, err := servicecache.New(env.Config, servicecache.Options{StatusNamespace: barelbNamespace})
		if err != nil {
			b.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = sc.Start(sctx) }()
		if !sc.WaitForSync(sctx) {
			b.Fatal("the service cache did not sync")
		}
		if got := len(sc.Services()); got != n {
			b.Fatalf("the service cache holds %d Services, want %d", got, n)
		}
		per := float64(liveHeap()-before) / float64(n)
		b.Logf("servicecache: %.0f bytes per Service with its EndpointSlice and ServiceL2Status", per)
		b.ReportMetric(per, "B/servicecache")
		cancel()
		<-done
		runtime.KeepAlive(sc)
	}
	for _, trimmed := range []bool{false, true} {
		var opts []app.Option
		if trimmed {
			opts = append(opts, app.WithCacheTransforms(l2announcer.CacheTransforms()))
		}
		o := app.DefaultOptions("0", "0")
		o.Namespace = barelbNamespace
		mgr, err := app.NewManager(env.Config, o, opts...)
		if err != nil {
			b.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		go func() { _ = mgr.Start(mctx) }()
		if !mgr.GetCache().WaitForCacheSync(mctx) {
			b.Fatal("cache did not start")
		}
		before := liveHeap()
		for _, kind := range kinds {
			if _, err := mgr.GetCache().GetInformer(mctx, kind); err != nil {
				b.Fatal(err)
			}
			after := liveHeap()
			per := float64(after-before) / float64(n)
			name := reflect.TypeOf(kind).Elem().Name()
			if !trimmed {
				name += "-untrimmed"
			}
			b.Logf("%s: %.0f bytes per object in the cache", name, per)
			b.ReportMetric(per, "B/"+name)
			before = after
		}
		cancel()
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
