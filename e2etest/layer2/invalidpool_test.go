package layer2_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/config"
)

// TestInvalidPoolEditCostsNothing reproduces a pool edit the webhook
// would refuse reaching the controller (the lab installs no webhook, as
// when it is down: failurePolicy Ignore): overlapping blocks in the pool.
// The Service keeps its address, the speakers keep announcing it and the
// client keeps reaching it, also after the controller and the announcing
// speaker restart; the pool says why it is not used.
func TestInvalidPoolEditCostsNothing(t *testing.T) {
	l := startLab(t)
	ctx := context.Background()
	l.RunPod(t, "keep-0", "keep", "node1")
	createService(t, l, svcSpec{name: "keep", app: "keep", port: 80, ipv4Only: true})
	ip := l.WaitIngress(t, "keep", 1)[0]
	waitEndpoints4(t, l, "keep", 1)
	node := waitAnnouncer(t, l, "keep", "")
	waitServed(t, l, ip, node, 3)

	editPool(t, l, func(s *barelbv1beta1.IPAddressPoolSpec) {
		s.Addresses = []barelbv1beta1.AddressRange{"198.51.100.210-198.51.100.239", "198.51.100.220/30"}
	})
	lab.Eventually(t, 30*time.Second, "pool lan refused", func() (bool, string) {
		var p barelbv1beta1.IPAddressPool
		if err := l.Client().Get(ctx, client.ObjectKey{Namespace: lab.BarelbNamespace, Name: "lan"}, &p); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(p.Status.Conditions, config.PoolConditionValid)
		return c != nil && c.Status == metav1.ConditionFalse && c.ObservedGeneration == p.Generation && strings.Contains(c.Message, "overlaps"),
			fmt.Sprintf("condition %+v, in force %v", c, p.Status.AddressesInForce)
	})
	check := func(when string) {
		t.Helper()
		if got := l.WaitIngress(t, "keep", 1); got[0] != ip {
			t.Fatalf("%s: Service keep moved from %s to %v", when, ip, got)
		}
		announcer := waitAnnouncer(t, l, "keep", "")
		seen := waitServed(t, l, ip, announcer, 5)
		if seen["keep-0"] != 5 {
			t.Errorf("%s: %s answered %v, want keep-0 five times", when, lab.URL(ip), seen)
		}
	}
	time.Sleep(2 * time.Second) // what the controller and speakers would do, they have done
	check("after the refused edit")

	if err := l.Restart("cp", lab.ComponentController); err != nil {
		t.Fatal(err)
	}
	l.RestartSpeaker(t, node)
	time.Sleep(2 * time.Second)
	check("after restarting the controller and the announcing speaker")
}

func editPool(tb testing.TB, l *lab.Lab, edit func(*barelbv1beta1.IPAddressPoolSpec)) {
	tb.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var p barelbv1beta1.IPAddressPool
		if err := l.Client().Get(context.Background(), client.ObjectKey{Namespace: lab.BarelbNamespace, Name: "lan"}, &p); err != nil {
			return err
		}
		edit(&p.Spec)
		return l.Client().Update(context.Background(), &p)
	})
	if err != nil {
		tb.Fatal(err)
	}
}
