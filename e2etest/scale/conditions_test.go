package scale

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// BenchmarkConditions counts the writes the controller's two Service
// conditions (barelb.io/AddressAssigned, barelb.io/Announced) cost at
// 10,000 Services, read from a watch of the Services:
//   - first start: every Service gets its address and AddressAssigned in
//     one write, and Announced (NoAdvertisement: none is configured) in
//     one more;
//   - a configuration change that changes every verdict (an
//     L2Advertisement covering the pool but selecting no node, so every
//     Service turns NoEligibleNode): one write per Service, no more;
//   - a cold start of the controller: no write at all.
//
// It prints the writes per phase; it fails only on a Service without its
// conditions.
//
// Run it once: go test -run=^$ -bench=Conditions -benchtime=1x ./e2etest/scale/
// (BARELB_SCALE_SERVICES sets the number of Services.)
func BenchmarkConditions(b *testing.B) {
	n := servicesWanted()
	ctx := context.Background()
	env, bin, kubeconfig, cs := controllerBench(b)
	parallel(b, n, func(i int) error {
		_, err := cs.CoreV1().Services(benchNamespace).Create(ctx, service(i), metav1.CreateOptions{})
		return err
	})
	pool := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "scale", Namespace: barelbNamespace}}
	pool.Spec.Addresses = []barelbv1beta1.AddressRange{"198.18.0.0/16"} // RFC 2544's benchmarking range; no traffic is sent
	if err := env.Client.Create(ctx, pool); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()

	announced := func(reason string) func(*corev1.Service) bool {
		return func(s *corev1.Service) bool {
			a := meta.FindStatusCondition(s.Status.Conditions, barelbv1beta1.ConditionAddressAssigned)
			c := meta.FindStatusCondition(s.Status.Conditions, barelbv1beta1.ConditionAnnounced)
			return a != nil && a.Status == metav1.ConditionTrue && c != nil && c.Reason == reason
		}
	}

	// First start.
	w := watchServices(b, cs, n, "their conditions", announced(barelbv1beta1.AnnouncedReasonNoAdvertisement))
	began := time.Now()
	controller := startController(b, filepath.Join(bin, "controller"), kubeconfig)
	w.waitAll(b, 10*time.Minute)
	firstTook := time.Since(began)
	time.Sleep(3 * time.Second) // anything late is counted too
	firstWrites := w.stop()

	// A configuration change that changes every Service's verdict.
	w = watchServices(b, cs, n, "their conditions", announced(barelbv1beta1.AnnouncedReasonNoEligibleNode))
	began = time.Now()
	adv := &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "nowhere", Namespace: barelbNamespace},
		Spec: barelbv1beta1.L2AdvertisementSpec{NodeSelectors: []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"zone": "nowhere"}}}}}
	if err := env.Client.Create(ctx, adv); err != nil {
		b.Fatal(err)
	}
	w.waitAll(b, 10*time.Minute)
	changeTook := time.Since(began)
	time.Sleep(3 * time.Second)
	changeWrites := w.stop()

	// A cold start: nothing to write.
	controller.stop(b)
	w = watchServices(b, cs, n, "their conditions", announced(barelbv1beta1.AnnouncedReasonNoEligibleNode))
	began = time.Now()
	controller = startController(b, filepath.Join(bin, "controller"), kubeconfig)
	controller.waitVerified(b, n, 5*time.Minute)
	coldTook := time.Since(began)
	time.Sleep(5 * time.Second) // the announcement reconciler's pass too
	coldWrites := w.stop()
	controller.stop(b)
	b.StopTimer()

	b.ReportMetric(float64(firstWrites)/float64(n), "writes/service-first-start")
	b.ReportMetric(float64(changeWrites)/float64(n), "writes/service-config-change")
	b.ReportMetric(float64(coldWrites), "writes-cold-start")
	b.Logf("%d Services: first start %d writes in %v (address+AddressAssigned, then Announced); a change of every verdict %d writes in %v; cold start (ready and verified in %v, then 5 s more) %d writes",
		n, firstWrites, firstTook.Round(time.Millisecond), changeWrites, changeTook.Round(time.Millisecond), coldTook.Round(time.Millisecond), coldWrites)
}
