package chaos_test

import (
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/e2etest/lab"
)

func TestMain(m *testing.M) {
	lab.RunHelperMode()
	os.Exit(m.Run())
}

// startChaosLab starts a lab of n nodes with barelb and the sample layer-2
// pool, a backend on every node and n dual-stack LoadBalancer Services
// (externalTrafficPolicy Cluster, or policy), and returns their addresses
// by Service name.
func startChaosLab(tb testing.TB, n int, policy ...corev1.ServiceExternalTrafficPolicy) (*lab.Lab, map[string][]string) {
	tb.Helper()
	lab.NeedsLab(tb, "the chaos suite")
	l := lab.Start(tb, lab.Options{Nodes: n, Barelb: true})
	l.ApplyFile(tb, "config/samples/l2-pool.yaml")
	for _, node := range l.Nodes() {
		l.RunPod(tb, "p-"+node.Name, "p", node.Name)
	}
	assigned := map[string][]string{}
	for i := range n {
		name := fmt.Sprintf("p%d", i)
		p := corev1.ServiceExternalTrafficPolicyCluster
		if len(policy) > 0 {
			p = policy[0]
		}
		l.CreateLBService(tb, name, "p", p)
		assigned[name] = l.WaitIngress(tb, name, 2)
	}
	l.WaitEndpoints(tb, "p0", n)
	return l, assigned
}
