package cluster_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// ingressHosts are the host names testdata/ingress.yaml routes, each to
// the Deployment of the same name's first part.
var ingressHosts = map[string]string{"app1.example": "app1", "app2.example": "app2"}

// TestIngress is the user's everyday scenario: an ingress controller
// (Traefik v3, built by e2etest/tools/traefik, deployed by our own
// manifests in testdata/ingress.yaml) behind a barelb LoadBalancer
// Service, two host names routed to two backends and reached from the
// LAN's client with curl over both families. Then the node announcing the
// VIP dies (LAN link down; its kubelet, containerd and containers
// stopped) and the outage is measured by request loops as in the failover
// benchmarks.
func TestIngress(t *testing.T) {
	c := startWith(t, 3, []string{"traefik.oci.tar"}, "a")
	c.kubectl(t, "apply", "-k", c.overlay(t, "a"))
	c.waitRollout(t)
	c.apply(t, pool)
	c.kubectl(t, "apply", "-f", "testdata/ingress.yaml")
	c.waitDeployments(t, "traefik/traefik", "default/app1", "default/app2")
	v4, v6 := c.vipsIn(t, "traefik", "traefik")
	c.checkIngress(t, v4, v6)
	// What a user reads: the Ingress shows the VIPs Traefik publishes
	// from its Service.
	lab.Eventually(t, 30*time.Second, "the Ingress's status naming the VIPs", func() (bool, string) {
		out, err := c.kubectlErr("-n", "default", "get", "ingress", "apps", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
		return err == nil && strings.Contains(out, v4) && strings.Contains(out, v6), out
	})

	victim := c.answering(t, v4)
	// Traefik and the backends leave the victim, so that what its death
	// costs is barelb's take-over, not a lost endpoint.
	for _, d := range []string{"traefik/traefik", "default/app1", "default/app2"} {
		ns, name, _ := strings.Cut(d, "/")
		c.kubectl(t, "-n", ns, "patch", "deployment", name, "--type=merge", "-p", lab.AvoidNodePatch(victim))
	}
	c.waitDeployments(t, "traefik/traefik", "default/app1", "default/app2")
	c.checkIngress(t, v4, v6)

	startProbes := func() map[string]*lab.Prober {
		return map[string]*lab.Prober{
			"app1.example over IPv4": c.StartProberResolving("client", "http://app1.example/", v4),
			"app2.example over IPv6": c.StartProberResolving("client", "http://app2.example/", v6),
		}
	}
	// The old pods' endpoints leave kube-proxy's rules a little after
	// the rollout: what is measured starts once the loops run clean.
	lab.WaitSteady(t, 60*time.Second, func() []*lab.Prober { return slices.Collect(maps.Values(startProbes())) })
	probes := startProbes()
	defer func() {
		for _, p := range probes {
			p.Stop()
		}
	}()
	time.Sleep(time.Second)
	cut := time.Now()
	if err := c.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 60*time.Second, "answers through both VIPs after "+victim+"'s death", func() (bool, string) {
		var waiting []string
		for what, p := range probes {
			if !p.OKSince(cut.Add(200 * time.Millisecond)) {
				waiting = append(waiting, what)
			}
		}
		return len(waiting) == 0, fmt.Sprint("waiting for ", waiting)
	})
	time.Sleep(time.Second)
	for what, p := range probes {
		r := p.Stop()
		delete(probes, what)
		fmt.Printf("ingress failover (%s announced the VIPs): %s: outage %v (from +%v after the loop began), %d ok, %d failed, answers %v\n",
			victim, what, r.Outage.Round(time.Millisecond), r.OutageAt.Round(time.Millisecond), r.OK, r.Failed, r.Answers)
		for name := range r.Answers {
			host, _, _ := strings.Cut(what, " ")
			if !strings.HasPrefix(name, ingressHosts[host]+"-") {
				t.Errorf("%s answered by %q, want a pod of %s", what, name, ingressHosts[host])
			}
		}
	}
	// The same VIPs, routed as before.
	if a4, a6 := c.vipsIn(t, "traefik", "traefik"); a4 != v4 || a6 != v6 {
		t.Errorf("the VIPs moved from %s, %s to %s, %s", v4, v6, a4, a6)
	}
	c.checkIngress(t, v4, v6)
}

// checkIngress asks for each host name through each VIP with curl from
// the client, as a user would (`curl --resolve`), and checks that the
// host's backend answered; a host name no rule names gets Traefik's 404.
func (c *cluster) checkIngress(t *testing.T, vips ...string) {
	t.Helper()
	for _, ip := range vips {
		for host, app := range ingressHosts {
			lab.Eventually(t, 60*time.Second, host+" through "+ip, func() (bool, string) {
				body, err := c.curl(host, ip)
				return err == nil && strings.HasPrefix(body, app+"-"), body + fmt.Sprint(err)
			})
		}
		body, err := c.curl("nobody.example", ip)
		if err == nil || !strings.Contains(body, "404") {
			t.Errorf("nobody.example through %s: %q, %v; want Traefik's 404", ip, body, err)
		}
	}
}

// curl fetches http://host/ from the client with host resolved to ip.
func (c *cluster) curl(host, ip string) (string, error) {
	addr := ip
	if strings.Contains(ip, ":") {
		addr = "[" + ip + "]"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.Exec(ctx, "client", "curl", "-sS", "--fail-with-body", "--max-time", "3",
		"--resolve", host+":80:"+addr, "http://"+host+"/")
	return strings.TrimSpace(string(out)), err
}

// waitDeployments waits until each NAMESPACE/NAME Deployment has rolled
// out.
func (c *cluster) waitDeployments(t *testing.T, deployments ...string) {
	t.Helper()
	for _, d := range deployments {
		ns, name, _ := strings.Cut(d, "/")
		if out, err := c.kubectlErr("-n", ns, "rollout", "status", "deployment/"+name, "--timeout=3m"); err != nil {
			out2, _ := c.kubectlErr("-n", ns, "get", "pods", "-o", "wide")
			out3, _ := c.kubectlErr("-n", ns, "logs", "deployment/"+name, "--tail=30")
			t.Fatalf("rollout of %s: %v\n%s\n%s\n%s", d, err, out, out2, out3)
		}
	}
}
