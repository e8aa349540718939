package l2announcer

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/internal/testenv"
)

// startAPI starts a real API server for one test, with barelb's
// namespace made. It returns a context that ends with the test and must,
// which fails the test on an error.
func startAPI(t *testing.T) (env *testenv.Env, ctx context.Context, must func(error)) {
	t.Helper()
	env = testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	must = func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}))
	return env, ctx, must
}

// readyNode creates a Ready node with these labels and InternalIP
// addresses.
func readyNode(ctx context.Context, must func(error), c client.Client, name string, labels map[string]string, addresses ...string) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	must(c.Create(ctx, node))
	for _, a := range addresses {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	must(c.Status().Update(ctx, node))
}
