package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/testenv"
)

// TestDrainCommands runs drain and undrain against a real API server:
// the label is set and removed, drain waits until no ServiceL2Status
// names the node, and says which Services it still announces when it
// gives up.
func TestDrainCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	c := env.Client
	for _, ns := range []string{barelbNS, "shop"} {
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	must(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"zone": "a"}}}))
	kubeconfig := env.WriteKubeconfig(t)
	labels := func() map[string]string {
		t.Helper()
		var n corev1.Node
		must(t, c.Get(ctx, client.ObjectKey{Name: "node-1"}, &n))
		return n.Labels
	}

	// A Service announced from the node: drain gives up after its
	// timeout, naming it.
	frontend := service(t, c, "shop", "frontend", nil, "default", "198.51.100.1")
	l2Status(t, c, frontend, "node-1")
	out, errOut, code := run(t, "", "drain", "node-1", "--timeout", "600ms", "--kubeconfig", kubeconfig)
	if code != 1 || !strings.Contains(errOut, "node node-1 still announces shop/frontend") {
		t.Errorf("drain with an announced Service: exit %d\n%s%s", code, out, errOut)
	}
	if got := labels(); got[barelbv1beta1.LabelDrain] != "true" || got["zone"] != "a" {
		t.Errorf("labels after drain: %v", got)
	}

	// The new announcer reports: drain returns.
	var statuses barelbv1beta1.ServiceL2StatusList
	must(t, c.List(ctx, &statuses, client.InNamespace(barelbNS)))
	go func() {
		time.Sleep(300 * time.Millisecond)
		st := statuses.Items[0]
		st.Status.Node = "node-2"
		if err := c.Status().Update(ctx, &st); err != nil {
			t.Error(err)
		}
	}()
	out, errOut, code = run(t, "", "drain", "node-1", "--kubeconfig", kubeconfig)
	if code != 0 || !strings.Contains(out, "node/node-1 announces no layer-2 address") {
		t.Errorf("drain: exit %d\n%s%s", code, out, errOut)
	}

	out, errOut, code = run(t, "", "undrain", "node-1", "--kubeconfig", kubeconfig)
	if code != 0 || !strings.Contains(out, "node/node-1 undrained") {
		t.Errorf("undrain: exit %d\n%s%s", code, out, errOut)
	}
	if got := labels(); len(got) != 1 || got["zone"] != "a" {
		t.Errorf("labels after undrain: %v, want zone=a only", got)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"drain"}, 2, "drain takes one node name"},
		{[]string{"undrain", "a", "b"}, 2, "undrain takes one node name"},
		{[]string{"drain", "no-such-node", "--kubeconfig", kubeconfig}, 1, `labelling node no-such-node: nodes "no-such-node" not found`},
	} {
		_, errOut, code := run(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.msg, errOut)
		}
	}
}
