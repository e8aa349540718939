package l2announcer

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/barelb/barelb/internal/k8s/speakerglue"
)

func TestSlimNodeHeartbeatChangesNothing(t *testing.T) {
	node := func(rv string, heartbeat time.Time, labels map[string]string, ready corev1.ConditionStatus) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: rv, Labels: labels},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, LastHeartbeatTime: metav1.NewTime(heartbeat)}}}}
		out, _ := slimNode(n)
		return out.(*corev1.Node)
	}
	now := time.Now()
	old := node("1", now, map[string]string{"zone": "a"}, corev1.ConditionTrue)
	p := speakerglue.ContentChanged()
	for _, c := range []struct {
		name string
		new  *corev1.Node
		want bool
	}{
		{"a heartbeat", node("2", now.Add(10*time.Second), map[string]string{"zone": "a"}, corev1.ConditionTrue), false},
		{"a label", node("2", now, map[string]string{"zone": "b"}, corev1.ConditionTrue), true},
		{"readiness", node("2", now, map[string]string{"zone": "a"}, corev1.ConditionFalse), true},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: c.new}); got != c.want {
			t.Errorf("%s: replan %v, want %v", c.name, got, c.want)
		}
	}
	if old.ResourceVersion != "1" {
		t.Error("the predicate changed the cached object")
	}
	if !p.Create(event.CreateEvent{Object: old}) || !p.Delete(event.DeleteEvent{Object: old}) {
		t.Error("creations and deletions must replan")
	}
}
