package cluster_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/testenv"
)

const (
	namespace    = "barelb-system"
	imageRepo    = lab.ImageRepo
	backendImage = lab.BackendImage
)

func TestMain(m *testing.M) {
	lab.RunHelperMode()
	os.Exit(m.Run())
}

// cluster is a lab of real nodes with barelb's images imported.
type cluster struct {
	*lab.Lab
	root string
}

// start brings up a lab of real nodes with barelb's images (bin/images,
// `make images`) imported under each of tags, and the backend image.
func start(t *testing.T, nodes int, tags ...string) *cluster {
	t.Helper()
	return startWith(t, nodes, nil, tags...)
}

// startWith is start with more of bin/images imported (by file name, e.g.
// "traefik.oci.tar", under lab.barelb.io/NAME:lab).
func startWith(t *testing.T, nodes int, more []string, tags ...string) *cluster {
	t.Helper()
	lab.NeedsLab(t, "the cluster suite")
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	imgDir := filepath.Join(root, "bin", "images")
	images := []lab.Image{{Name: backendImage, Path: filepath.Join(imgDir, "backend.oci.tar")}}
	for _, f := range more {
		images = append(images, lab.Image{Name: "lab.barelb.io/" + strings.TrimSuffix(f, ".oci.tar") + ":lab", Path: filepath.Join(imgDir, f)})
	}
	for _, tag := range tags {
		images = append(images, lab.BarelbImages(imgDir, tag)...)
	}
	for _, img := range images {
		if _, err := os.Stat(img.Path); err != nil {
			t.Fatalf("%v (run `make images cluster-images`)", err)
		}
	}
	// Registered before the lab's own clean-up, so it runs after it: a
	// real node must leave no container, cgroup, mount or namespace.
	var l *lab.Lab
	t.Cleanup(func() {
		if l == nil {
			return
		}
		left, err := lab.Leftovers(l.Prefix(), "")
		if err != nil || len(left) > 0 {
			t.Errorf("the lab left %v (%v)", left, err)
		}
	})
	l = lab.Start(t, lab.Options{Nodes: nodes, Kubelets: true, Images: images})
	return &cluster{Lab: l, root: root}
}

// kubectl runs kubectl against the lab as its administrator.
func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.kubectlErr(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) kubectlErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.Kubeconfig()}, args...)...).CombinedOutput()
	return string(out), err
}

// overlay writes a kustomization that is config/default with the images
// set to the imported ones, as the README tells users to do, and returns
// its folder.
func (c *cluster) overlay(t *testing.T, tag string) string {
	t.Helper()
	dir := t.TempDir()
	if err := lab.WriteOverlay(dir, c.root, tag); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitRollout waits until the speaker DaemonSet and the controller
// Deployment have rolled out (every pod Running and Ready).
func (c *cluster) waitRollout(t *testing.T) {
	t.Helper()
	for _, obj := range []string{"daemonset/barelb-speaker", "deployment/barelb-controller"} {
		if out, err := c.kubectlErr("-n", namespace, "rollout", "status", obj, "--timeout=3m"); err != nil {
			c.dump(t)
			t.Fatalf("rollout of %s: %v\n%s", obj, err, out)
		}
	}
}

// dump logs what explains a failed rollout: pods, events, logs.
func (c *cluster) dump(t *testing.T) {
	t.Helper()
	out, _ := c.kubectlErr("-n", namespace, "get", "pods", "-o", "wide")
	t.Logf("pods:\n%s", out)
	out, _ = c.kubectlErr("-n", namespace, "get", "events", "--sort-by=.lastTimestamp")
	t.Logf("events:\n%s", out)
	for _, sel := range []string{"app.kubernetes.io/component=speaker", "app.kubernetes.io/component=controller"} {
		out, _ = c.kubectlErr("-n", namespace, "logs", "-l", sel, "--tail=40", "--prefix")
		t.Logf("logs of %s:\n%s", sel, out)
	}
}

// speakerLog returns the running speakers' log lines that match re, each
// prefixed with its pod.
func (c *cluster) speakerLog(re *regexp.Regexp) string {
	out, err := c.kubectlErr("-n", namespace, "logs", "-l", "app.kubernetes.io/component=speaker", "--prefix", "--tail=-1")
	if err != nil {
		return fmt.Sprintf("kubectl logs: %v\n%s", err, out)
	}
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if re.MatchString(line) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// pool is an address pool on the LAN and its L2Advertisement.
const pool = `apiVersion: barelb.io/v1beta1
kind: IPAddressPool
metadata:
  name: lan
  namespace: barelb-system
spec:
  addresses:
  - 198.51.100.200-198.51.100.239
  - 2001:db8:100::200-2001:db8:100::239
---
apiVersion: barelb.io/v1beta1
kind: L2Advertisement
metadata:
  name: lan
  namespace: barelb-system
spec:
  ipAddressPools:
  - lan
`

// apply applies a manifest given as text.
func (c *cluster) apply(t *testing.T, manifest string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	c.kubectl(t, "apply", "-f", f)
}

// backend is lab.BackendManifest.
func backend(name string, replicas int) string { return lab.BackendManifest(name, replicas) }

// vips waits until the Service has an address per family and returns
// them.
func (c *cluster) vips(t *testing.T, svc string) (v4, v6 string) {
	t.Helper()
	return c.vipsIn(t, "default", svc)
}

// vipsIn is vips for a Service in namespace ns.
func (c *cluster) vipsIn(t *testing.T, ns, svc string) (v4, v6 string) {
	t.Helper()
	lab.Eventually(t, 60*time.Second, "addresses of "+svc, func() (bool, string) {
		out, err := c.kubectlErr("-n", ns, "get", "service", svc, "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
		if err != nil {
			return false, out
		}
		v4, v6 = "", ""
		for _, ip := range strings.Fields(out) {
			if strings.Contains(ip, ":") {
				v6 = ip
			} else {
				v4 = ip
			}
		}
		return v4 != "" && v6 != "", out
	})
	return v4, v6
}

// get fetches a URL from the LAN's client.
func (c *cluster) get(url string) (string, error) {
	body, err := c.Get("client", url, 2*time.Second)
	return strings.TrimSpace(body), err
}

// answering waits until exactly one node answers ARP (or NDP) for ip when
// the client asks, and names it.
func (c *cluster) answering(t *testing.T, ip string) string {
	t.Helper()
	var node string
	lab.Eventually(t, 30*time.Second, "one node answering for "+ip, func() (bool, string) {
		macs, err := c.WhoHas("client", netip.MustParseAddr(ip))
		if err != nil || len(macs) != 1 {
			return false, fmt.Sprint(macs, err)
		}
		node = c.NodeOfMAC(macs[0])
		return node != "", macs[0]
	})
	return node
}
