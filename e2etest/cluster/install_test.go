package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
	checkWebhook(t, c)
	c.apply(t, backend("web", 2))
	checkVIPs(t, c, "web")
}

// overlapping is a pool whose addresses overlap pool's: only the
// controller's webhook (not the CRD's schema) refuses it.
const overlapping = `apiVersion: barelb.io/v1beta1
kind: IPAddressPool
metadata:
  name: overlapping
  namespace: barelb-system
spec:
  addresses:
  - 198.51.100.230-198.51.100.231
`

// checkWebhook proves that the API server reaches the controller's
// webhook through barelb-webhook-service and trusts its certificate: the
// webhook's failurePolicy is Ignore, so an unreachable webhook would let
// the overlapping pool in.
func checkWebhook(t *testing.T, c *cluster) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "overlapping.yaml")
	if err := os.WriteFile(f, []byte(overlapping), 0o644); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 60*time.Second, "the webhook to refuse an overlapping pool", func() (bool, string) {
		out, err := c.kubectlErr("apply", "-f", f)
		if err == nil {
			// Accepted: the webhook was not reached (yet); try again.
			_, _ = c.kubectlErr("delete", "-f", f)
			return false, out
		}
		return strings.Contains(out, "denied the request"), out
	})
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

// checkRunning checks the installed programs from the machine, as the
// manifests declare them: on every node one speaker in the node's own
// network namespace (hostNetwork), root with no capability but NET_RAW,
// a read-only root file system and the node's address from the downward
// API; two controllers, not root, without capabilities, read-only root.
func checkRunning(t *testing.T, c *cluster) {
	t.Helper()
	t.Log(c.kubectl(t, "-n", namespace, "get", "pods", "-o", "wide"))
	const capNetRaw = 1 << 13
	controllers := 0
	for _, n := range c.Nodes() {
		speakers := 0
		for _, pid := range c.NodeProcesses(n.Name) {
			p, err := inspect(pid)
			if err != nil {
				continue // gone meanwhile
			}
			switch p.Comm {
			case "speaker":
				speakers++
				want := proc{Comm: "speaker", UID: "0", CapEff: capNetRaw, RootRO: true, Netns: netnsInode(t, n.Netns),
					Env: map[string]string{"NODE_NAME": n.Name, "NODE_IP": n.Addr(lab.SegmentLAN, 4).String()}}
				if diff := cmp.Diff(want, p.only(want.Env)); diff != "" {
					t.Errorf("speaker on %s (-want +got):\n%s", n.Name, diff)
				}
			case "controller":
				controllers++
				want := proc{Comm: "controller", UID: "65532", CapEff: 0, RootRO: true, Netns: p.Netns, Env: map[string]string{}}
				if p.Netns == netnsInode(t, n.Netns) {
					t.Errorf("controller on %s runs in the node's network namespace", n.Name)
				}
				if diff := cmp.Diff(want, p.only(want.Env)); diff != "" {
					t.Errorf("controller on %s (-want +got):\n%s", n.Name, diff)
				}
			}
		}
		if speakers != 1 {
			t.Errorf("node %s runs %d speakers, want 1", n.Name, speakers)
		}
	}
	if controllers != 2 {
		t.Errorf("%d controllers run, want 2", controllers)
	}
}

// proc is what the machine tells of a container's process.
type proc struct {
	Comm   string
	UID    string // real UID
	CapEff uint64
	RootRO bool
	Netns  uint64
	Env    map[string]string
}

func (p proc) only(keys map[string]string) proc {
	env := map[string]string{}
	for k := range keys {
		env[k] = p.Env[k]
	}
	p.Env = env
	return p
}

func inspect(pid int) (proc, error) {
	dir := fmt.Sprintf("/proc/%d", pid)
	var p proc
	comm, err := os.ReadFile(dir + "/comm")
	if err != nil {
		return p, err
	}
	p.Comm = strings.TrimSpace(string(comm))
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch {
		case k == "Uid" && len(f) > 0:
			p.UID = f[0]
		case k == "CapEff" && len(f) > 0:
			p.CapEff, _ = strconv.ParseUint(f[0], 16, 64)
		}
	}
	environ, err := os.ReadFile(dir + "/environ")
	if err != nil {
		return p, err
	}
	p.Env = map[string]string{}
	for _, kv := range strings.Split(string(environ), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			p.Env[k] = v
		}
	}
	mounts, err := os.ReadFile(dir + "/mountinfo")
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			p.RootRO = strings.HasPrefix(f[5], "ro")
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir+"/ns/net", &st); err != nil {
		return p, err
	}
	p.Netns = st.Ino
	return p, nil
}

func netnsInode(t *testing.T, netns string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+netns, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
