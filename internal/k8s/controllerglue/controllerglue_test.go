package controllerglue

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func TestLoadBalancerServices(t *testing.T) {
	svc := func(ns, name string, typ corev1.ServiceType) client.Object {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Type: typ}}
	}
	c := fake.NewClientBuilder().WithObjects(
		svc("a", "lb", corev1.ServiceTypeLoadBalancer), svc("a", "internal", corev1.ServiceTypeClusterIP),
		svc("b", "lb", corev1.ServiceTypeLoadBalancer), svc("b", "port", corev1.ServiceTypeNodePort),
	).Build()
	req := func(ns, name string) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []client.ListOption
		want []reconcile.Request
	}{
		{"every namespace", nil, []reconcile.Request{req("a", "lb"), req("b", "lb")}},
		{"one namespace", []client.ListOption{client.InNamespace("b")}, []reconcile.Request{req("b", "lb")}},
		{"no LoadBalancer Service", []client.ListOption{client.InNamespace("c")}, nil},
	} {
		if diff := cmp.Diff(tc.want, LoadBalancerServices(ctx, c, tc.opts...)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	failing := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return errors.New("down")
		},
	}).Build()
	if got := LoadBalancerServices(ctx, failing); got != nil {
		t.Errorf("a failed list enqueued %v, want nothing", got)
	}
}

func TestInNamespace(t *testing.T) {
	p := InNamespace("barelb-system")
	for ns, want := range map[string]bool{"barelb-system": true, "default": false, "": false} {
		obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"}}
		if got := p.Create(event.CreateEvent{Object: obj}); got != want {
			t.Errorf("namespace %q: passed %v, want %v", ns, got, want)
		}
	}
}
