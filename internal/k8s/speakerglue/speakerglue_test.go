package speakerglue

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

func TestContentChanged(t *testing.T) {
	svc := func(rv string, port int32) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", ResourceVersion: rv,
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m" + rv}}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: port}}}}
	}
	p := ContentChanged()
	for _, c := range []struct {
		name     string
		old, new *corev1.Service
		want     bool
	}{
		{"only the resource version and managed fields", svc("1", 80), svc("2", 80), false},
		{"a port", svc("1", 80), svc("2", 81), true},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: c.old, ObjectNew: c.new}); got != c.want {
			t.Errorf("%s: changed %v, want %v", c.name, got, c.want)
		}
	}
}
