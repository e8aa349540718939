package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/internal/testenv"
)

// ApplyFile creates every object of a YAML file of the repository.
func (l *Lab) ApplyFile(tb testing.TB, rel string) {
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

// CreateLBService creates a dual-stack LoadBalancer Service default/NAME
// selecting app=APP, port 80 to the pods' 8080.
func (l *Lab) CreateLBService(tb testing.TB, name, app string, policy corev1.ServiceExternalTrafficPolicy) {
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

// WaitIngress waits up to 30 s for n load-balancer addresses of Service
// default/NAME and returns them sorted (IPv4 first).
func (l *Lab) WaitIngress(tb testing.TB, name string, n int) []string {
	tb.Helper()
	var ips []string
	start := time.Now()
	Eventually(tb, 30*time.Second, "addresses of Service "+name, func() (bool, string) {
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
