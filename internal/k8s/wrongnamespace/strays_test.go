package wrongnamespace

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/testenv"
)

func TestObjectsOutsideTheNamespaceAreTold(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Client
	for _, ns := range []string{"barelb-system", "elsewhere"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	stray := &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "stray", Namespace: "elsewhere"}}
	home := &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "home", Namespace: "barelb-system"}}
	peer := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "stray-peer", Namespace: "elsewhere"},
		Spec: barelbv1beta1.BGPPeerSpec{MyASN: 64512, PeerASN: 64500, PeerAddress: "203.0.113.1"}}
	for _, o := range []client.Object{stray, home, peer} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	mgr, err := ctrl.NewManager(env.Config, env.ManagerOptions(testr.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(mgr, "barelb-system"); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, ctx, mgr.Start)

	warned := func(name string) bool {
		var events corev1.EventList
		_ = c.List(ctx, &events)
		for _, e := range events.Items {
			if e.InvolvedObject.Name == name && e.Reason == ReasonWrongNamespace {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(15 * time.Second)
	for !(warned("stray") && warned("stray-peer")) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s Event on the objects outside barelb-system (L2Advertisement %v, BGPPeer %v)", ReasonWrongNamespace, warned("stray"), warned("stray-peer"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if warned("home") {
		t.Error("an object in barelb's namespace was told it is ignored")
	}
}
