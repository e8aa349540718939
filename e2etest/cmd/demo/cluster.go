package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/barelb/barelb/e2etest/lab"
)

// demoTag is the tag the cluster demo imports barelb's images under.
const demoTag = "demo"

// runCluster is the demo on real nodes: kubelets and containerd in the
// node namespaces, barelb installed with `kubectl apply -k` as the README
// says, a Deployment behind a LoadBalancer Service, and the announcing
// node's death (its LAN link, kubelet, containerd and containers).
func runCluster(ctx context.Context, root string, keep bool) error {
	imageDir := filepath.Join(root, "bin", "images")
	images := append(lab.BarelbImages(imageDir, demoTag), lab.Image{Name: lab.BackendImage, Path: filepath.Join(imageDir, "backend.oci.tar")})
	for _, img := range images {
		if _, err := os.Stat(img.Path); err != nil {
			return fmt.Errorf("%w (make images cluster-images)", err)
		}
	}

	step("Starting a 3-node Kubernetes cluster of real nodes in network namespaces")
	fmt.Println("    (a kubelet and containerd per node, the control plane, kube-proxy; barelb's images imported into every node; nothing touches this machine's network)")
	start := time.Now()
	l, err := lab.Up(ctx, lab.Options{Nodes: 3, Kubelets: true, Images: images, Log: logr.Discard()})
	if err != nil {
		return err
	}
	s := session{ctx: ctx, l: l}
	defer s.up(start, "container, process")()
	kubectl := s.kubectl
	if err := kubectl("get", "nodes", "-o", "wide"); err != nil {
		return err
	}

	step("Installing barelb as the README says: kubectl apply -k (config/default with the images set)")
	dir, err := os.MkdirTemp("", "barelb-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := lab.WriteOverlay(dir, root, demoTag); err != nil {
		return err
	}
	if out, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml")); err == nil {
		fmt.Printf("$ cat kustomization.yaml\n%s", out)
	}
	if err := kubectl("apply", "-k", dir); err != nil {
		return err
	}
	for _, obj := range []string{"daemonset/barelb-speaker", "deployment/barelb-controller"} {
		if err := kubectl("-n", lab.BarelbNamespace, "rollout", "status", obj, "--timeout=3m"); err != nil {
			return err
		}
	}
	if err := kubectl("-n", lab.BarelbNamespace, "get", "pods", "-o", "wide"); err != nil {
		return err
	}

	step("Giving barelb addresses to hand out: an IPAddressPool on the LAN and an L2Advertisement")
	// The webhook checks the pool; its Service may need a moment more
	// than the rollout.
	if err := retry(ctx, 30*time.Second, func() error { return kubectl("apply", "-f", "config/samples/l2-pool.yaml") }); err != nil {
		return err
	}

	step("Deploying a web server: a Deployment of two pods and a Service of type LoadBalancer")
	if err := s.apply(lab.BackendManifest("web", 2)); err != nil {
		return err
	}
	if err := kubectl("rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
		return err
	}
	ips, err := s.addresses("web")
	if err != nil {
		return err
	}
	if err := s.curlEach(ips); err != nil {
		return err
	}
	var node string
	if err := poll(ctx, 30*time.Second, "one node answering ARP for "+ips[0], func() bool {
		macs, err := l.WhoHas("client", netip.MustParseAddr(ips[0]))
		if err != nil || len(macs) != 1 {
			return false
		}
		node = l.NodeOfMAC(macs[0])
		return node != ""
	}); err != nil {
		return err
	}
	fmt.Printf("    asked from the client, one node answers ARP for %s: %s\n", ips[0], node)
	if err := kubectl("get", "servicel2statuses", "-n", lab.BarelbNamespace); err != nil {
		return err
	}

	step("%s dies while the client sends a request every 10 ms", node)
	fmt.Printf("    (the web pods move off %s first, so that what its death costs is barelb's take-over, not a lost pod)\n", node)
	if err := kubectl("patch", "deployment", "web", "--type=merge", "-p", lab.AvoidNodePatch(node)); err != nil {
		return err
	}
	if err := kubectl("rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
		return err
	}
	url := lab.URL(ips[0])
	p := l.StartProber("client", url)
	time.Sleep(time.Second)
	h, err := l.Host(node)
	if err != nil {
		return err
	}
	fmt.Printf("$ ip link set <%s's LAN port> down; stop %s's kubelet, containerd and containers\n", node, node)
	cut := time.Now()
	if err := l.KillNode(node); err != nil {
		return err
	}
	var moved time.Duration
	for time.Since(cut) < 30*time.Second {
		if mac, _ := l.Neighbour("client", ips[0]); mac != "" && !strings.EqualFold(mac, h.MAC(lab.SegmentLAN)) {
			moved = time.Since(cut)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	r := p.Stop()
	mac, _ := l.Neighbour("client", ips[0])
	fmt.Printf("    %s took over: the client's neighbour entry for %s pointed at it %v after the cut\n", l.NodeOfMAC(mac), ips[0], moved.Round(time.Millisecond))
	fmt.Printf("    request loop: %d answered, %d failed; longest time without an answer: %v\n", r.OK, r.Failed, r.Outage.Round(time.Millisecond))

	if keep {
		step("The lab keeps running until you press Ctrl-C")
		fmt.Printf(`    export KUBECONFIG=%s
    kubectl get svc,pods,servicel2statuses -A -o wide
    ip netns exec %s curl %s      # from the client on the LAN
    logs of every process: %s/logs
`, l.Kubeconfig(), l.ClientHost().Netns, url, l.StateDir())
		<-ctx.Done()
		return nil
	}
	fmt.Println("\n    (KEEP=1 make demo-cluster keeps the lab running and tells how to use it)")
	return nil
}

// retry runs f until it succeeds or timeout passes.
func retry(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
