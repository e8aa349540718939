package cluster_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// TestRelease installs barelb from the one file `make release` writes
// (`kubectl apply -f barelb.yaml`, as MetalLB users apply
// metallb-native.yaml), serves a VIP, then uninstalls it with `kubectl
// delete -f` and checks that nothing of barelb is left.
func TestRelease(t *testing.T) {
	c := start(t, 2, "r1")
	dir := t.TempDir()
	out, err := exec.Command("make", "-C", c.root, "--no-print-directory", "release",
		"VERSION=r1", "IMAGE_REGISTRY="+imageRepo, "RELEASE_DIR="+dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "barelb.yaml")
	c.kubectl(t, "apply", "-f", file)
	c.waitRollout(t)
	checkRunning(t, c)
	c.apply(t, pool)
	c.apply(t, backend("web", 1))
	checkVIPs(t, c, "web")

	c.kubectl(t, "delete", "-f", file, "--wait=true", "--timeout=3m")
	checkUninstalled(t, c, false)
	logServiceAddress(t, c, "web")
}

// TestHelm installs barelb with `helm install` of config/helm/barelb as
// the README says (images set with --set), serves a VIP, then uninstalls
// it with `helm uninstall`.
func TestHelm(t *testing.T) {
	c := start(t, 2, "h1")
	helm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(c.root, "bin", "helm"), append([]string{"--kubeconfig", c.Kubeconfig()}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	helm("install", "barelb", filepath.Join(c.root, "config", "helm", "barelb"), "--namespace", namespace, "--create-namespace",
		"--set", "controller.image.repository="+imageRepo+"/controller,controller.image.tag=h1",
		"--set", "speaker.image.repository="+imageRepo+"/speaker,speaker.image.tag=h1")
	c.waitRollout(t)
	checkRunning(t, c)
	c.apply(t, pool)
	checkWebhook(t, c)
	c.apply(t, backend("web", 1))
	checkVIPs(t, c, "web")

	helm("uninstall", "barelb", "--namespace", namespace, "--wait", "--timeout=3m")
	// Helm keeps the CRDs (its rule for crds/) and the namespace it was
	// given, and with it what barelb made at run time; the README says so
	// and gives the two commands that finish the uninstall.
	checkUninstalled(t, c, true)
	logServiceAddress(t, c, "web")
	c.kubectl(t, "delete", "namespace", namespace, "--timeout=2m")
	c.kubectl(t, "delete", "-f", filepath.Join(c.root, "config", "helm", "barelb", "crds"), "--timeout=2m")
	checkUninstalled(t, c, false)
}

// logServiceAddress logs what became of a Service's addresses after an
// uninstall (see README, "Uninstall"): whether the controller released
// them depends on whether it saw its pools go before it stopped.
func logServiceAddress(t *testing.T, c *cluster, svc string) {
	t.Helper()
	out := c.kubectl(t, "-n", "default", "get", "service", svc, "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
	t.Logf("after the uninstall Service %s lists addresses %q", svc, out)
}

// checkUninstalled checks that an uninstall left nothing of barelb: no
// cluster-wide object (webhook configuration, roles, CRDs unless Helm
// keeps them by its rule for crds/), nothing in barelb-system but what
// Kubernetes itself puts in every namespace, no finalizer on Services, and
// on the nodes no barelb process, no VIP on a link, no barelb iptables
// rule and no proxy neighbour entry.
//
// With helm, Helm's own leftovers are allowed: the CRDs and, in the
// namespace Helm does not delete, the Secrets and Leases barelb made at run
// time (its memberlist key, its webhook certificate, the controller's
// election and the speakers' heartbeats).
func checkUninstalled(t *testing.T, c *cluster, helm bool) {
	t.Helper()
	lab.Eventually(t, 2*time.Minute, "barelb's objects to be gone", func() (bool, string) {
		var left []string
		out, err := c.kubectlErr("get", "validatingwebhookconfigurations,clusterroles,clusterrolebindings,crds", "-o", "name")
		if err != nil {
			return false, out
		}
		for _, name := range strings.Fields(out) {
			if strings.Contains(name, "barelb") && !(helm && strings.HasPrefix(name, "customresourcedefinition")) {
				left = append(left, name)
			}
		}
		out, _ = c.kubectlErr("-n", namespace, "get", "all,secrets,configmaps,serviceaccounts,roles,rolebindings,leases,poddisruptionbudgets", "-o", "name")
		for _, name := range strings.Fields(out) {
			// Kubernetes' own, in every namespace while it exists.
			if name == "serviceaccount/default" || name == "configmap/kube-root-ca.crt" {
				continue
			}
			if helm && (name == "secret/barelb-memberlist" || name == "secret/barelb-webhook-cert" ||
				strings.HasPrefix(name, "lease.coordination.k8s.io/")) {
				continue
			}
			{
				left = append(left, namespace+": "+name)
			}
		}
		out, _ = c.kubectlErr("get", "services", "-A", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.finalizers}{\"\\n\"}{end}")
		for _, line := range strings.Fields(out) {
			if strings.Contains(line, "barelb") {
				left = append(left, "finalizer "+line)
			}
		}
		for _, n := range c.Nodes() {
			for _, pid := range c.NodeProcesses(n.Name) {
				if p, err := inspect(pid); err == nil && (p.Comm == "speaker" || p.Comm == "controller") {
					left = append(left, n.Name+": process "+p.Comm)
				}
			}
			if out, _ := c.Exec(t.Context(), n.Name, "ip", "addr"); strings.Contains(string(out), "198.51.100.2") || strings.Contains(string(out), "2001:db8:100::2") {
				left = append(left, n.Name+": a VIP on a link")
			}
			if out, _ := c.Exec(t.Context(), n.Name, "iptables-save"); strings.Contains(strings.ToLower(string(out)), "barelb") {
				left = append(left, n.Name+": iptables rules")
			}
			if out, _ := c.Exec(t.Context(), n.Name, "ip", "neigh", "show", "proxy"); strings.TrimSpace(string(out)) != "" {
				left = append(left, n.Name+": proxy neighbours "+string(out))
			}
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
}
