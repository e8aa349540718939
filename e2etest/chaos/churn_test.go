package chaos_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
)

// smallBurst is how many Services a churn step creates at once by
// default: the sample pool's 40 IPv4 addresses, less the chaos lab's own.
// BARELB_CHURN=500 makes bursts of 500 IPv6-only Services instead, from a
// pool of 4,096 addresses on the LAN added for them.
const smallBurst = 30

// churnBurst is the burst size and the IP family of its Services.
func churnBurst(tb testing.TB, l *lab.Lab) (int, corev1.IPFamily) {
	tb.Helper()
	v := os.Getenv("BARELB_CHURN")
	if v == "" {
		return smallBurst, corev1.IPv4Protocol
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 4000 {
		tb.Fatalf("BARELB_CHURN=%q: want a number of Services, 1 to 4000", v)
	}
	for _, obj := range []client.Object{
		&barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "burst", Namespace: lab.BarelbNamespace},
			Spec: barelbv1beta1.IPAddressPoolSpec{Addresses: []barelbv1beta1.AddressRange{"2001:db8:100::1000/116"}}},
		&barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "burst", Namespace: lab.BarelbNamespace},
			Spec: barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"burst"}}},
	} {
		if err := l.Client().Create(context.Background(), obj); err != nil {
			tb.Fatal(err)
		}
	}
	return n, corev1.IPv6Protocol
}

// TestChurnUnderFailure kills barelb's processes while Services come and
// go, and checks afterwards, from the client's side, that every address
// of every Service is answered by exactly one node, the one its
// ServiceL2Status names; that no address was handed out twice; and that
// the Services that were there before kept their addresses.
func TestChurnUnderFailure(t *testing.T) {
	l, assigned := startChaosLab(t, 4)
	before := checkOneAnswerer(t, l, assigned, 30*time.Second).Counts
	burst, family := churnBurst(t, l)
	settle := 30*time.Second + time.Duration(burst)*100*time.Millisecond

	t.Run("the busiest speaker SIGKILLed in a burst of Service changes", func(t *testing.T) {
		node := busiest(before)
		created := createBurst(t, l, "burst", burst, family, func(i int) {
			if i == burst/2 {
				if err := l.Kill(node, lab.ComponentSpeaker); err != nil {
					t.Fatal(err)
				}
			}
		})
		if err := l.Restart(node, lab.ComponentSpeaker); err != nil {
			t.Fatal(err)
		}
		all := merge(assigned, created)
		checkNoDuplicates(t, all)
		checkOneAnswerer(t, l, all, settle)
		checkUnchanged(t, l, assigned)
		deleteServices(t, l, created)
		checkOneAnswerer(t, l, assigned, 30*time.Second)
	})

	t.Run("the controller SIGKILLed in a burst of Service creations", func(t *testing.T) {
		created := createBurst(t, l, "again", burst, family, func(i int) {
			if i == burst/2 {
				if err := l.Kill("cp", lab.ComponentController); err != nil {
					t.Fatal(err)
				}
				if err := l.Restart("cp", lab.ComponentController); err != nil {
					t.Fatal(err)
				}
			}
		})
		all := merge(assigned, created)
		checkNoDuplicates(t, all)
		checkOneAnswerer(t, l, all, settle)
		checkUnchanged(t, l, assigned)
		deleteServices(t, l, created)
	})
}

// createBurst creates n single-stack LoadBalancer Services of family
// named PREFIX-i as fast as it can, calling during(i) before each, and
// returns their addresses once every one has one.
func createBurst(tb testing.TB, l *lab.Lab, prefix string, n int, family corev1.IPFamily, during func(i int)) map[string][]string {
	tb.Helper()
	single := corev1.IPFamilyPolicySingleStack
	var names []string
	for i := range n {
		during(i)
		name := fmt.Sprintf("%s-%d", prefix, i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, IPFamilyPolicy: &single, IPFamilies: []corev1.IPFamily{family},
				Selector: map[string]string{"app": "p"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		if err := l.Client().Create(context.Background(), svc); err != nil {
			tb.Fatal(err)
		}
		names = append(names, name)
	}
	out := map[string][]string{}
	for _, name := range names {
		out[name] = waitAddresses(tb, l, name, 1, 60*time.Second)
	}
	return out
}

// waitAddresses waits for n load-balancer addresses of Service
// default/NAME.
func waitAddresses(tb testing.TB, l *lab.Lab, name string, n int, timeout time.Duration) []string {
	tb.Helper()
	var ips []string
	lab.Eventually(tb, timeout, "addresses of Service "+name, func() (bool, string) {
		var svc corev1.Service
		if err := l.Client().Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, &svc); err != nil {
			return false, err.Error()
		}
		ips = ips[:0]
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		return len(ips) == n, fmt.Sprint(ips)
	})
	return ips
}

func merge(a, b map[string][]string) map[string][]string {
	out := map[string][]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// checkNoDuplicates fails the test when two Services hold one address
// (none of these Services asks to share).
func checkNoDuplicates(tb testing.TB, assigned map[string][]string) {
	tb.Helper()
	holders := map[string][]string{}
	for svc, ips := range assigned {
		for _, ip := range ips {
			holders[ip] = append(holders[ip], svc)
		}
	}
	for ip, svcs := range holders {
		if len(svcs) > 1 {
			sort.Strings(svcs)
			tb.Errorf("address %s handed out to %v", ip, svcs)
		}
	}
}

// checkUnchanged fails the test when a Service's addresses are no longer
// the ones it had.
func checkUnchanged(tb testing.TB, l *lab.Lab, assigned map[string][]string) {
	tb.Helper()
	for name, ips := range assigned {
		if now := waitAddresses(tb, l, name, len(ips), 10*time.Second); fmt.Sprint(now) != fmt.Sprint(ips) {
			tb.Errorf("Service %s had %v, now %v", name, ips, now)
		}
	}
}

func deleteServices(tb testing.TB, l *lab.Lab, services map[string][]string) {
	tb.Helper()
	for name := range services {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
		if err := l.Client().Delete(context.Background(), svc); err != nil {
			tb.Error(err)
		}
	}
}
