package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/testenv"
)

const frontYAML = `apiVersion: v1
kind: Pod
metadata:
  name: front-a
  labels: {app: front, lab.barelb.io/run: "true"}
spec:
  nodeSelector: {kubernetes.io/hostname: node1}
  containers: [{name: web, image: lab/podserver, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata:
  name: front-b
  labels: {app: front, lab.barelb.io/run: "true"}
spec:
  nodeSelector: {kubernetes.io/hostname: node2}
  containers: [{name: web, image: lab/podserver, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata:
  name: front
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: front}
  ports: [{name: http, port: 80, targetPort: 8080}]
`

func main() {
	lab.RunHelperMode()
	keep := flag.Bool("keep", os.Getenv("KEEP") == "1", "keep the lab running until Ctrl-C (also KEEP=1)")
	cluster := flag.Bool("cluster", false, "real nodes (kubelets, containerd), barelb installed with kubectl apply -k (make demo-cluster)")
	flag.Parse()
	if err := run(*keep, *cluster); err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...)
}

func run(keep, cluster bool) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab makes network namespaces: run as root")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return fmt.Errorf("run from inside the repository: %w", err)
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if cluster {
		return runCluster(ctx, root, keep)
	}

	step("Starting a 3-node Kubernetes cluster in network namespaces, with barelb's controller and speakers")
	fmt.Println("    (etcd, kube-apiserver, kube-proxy per node, a client on the LAN; nothing touches this machine's network)")
	start := time.Now()
	l, err := lab.Up(ctx, lab.Options{Nodes: 3, Barelb: true, Log: logr.Discard()})
	if err != nil {
		return err
	}
	s := session{ctx: ctx, l: l}
	defer s.up(start, "process")()
	kubectl := s.kubectl
	if err := kubectl("get", "nodes", "-o", "wide"); err != nil {
		return err
	}

	step("Giving barelb addresses to hand out: an IPAddressPool on the LAN and an L2Advertisement")
	if err := kubectl("apply", "-f", "config/samples/l2-pool.yaml"); err != nil {
		return err
	}

	step("Deploying a front end: two backend pods (on node1 and node2) and a Service of type LoadBalancer")
	if err := s.apply(frontYAML); err != nil {
		return err
	}
	ips, err := s.addresses("front")
	if err != nil {
		return err
	}
	node, err := announcer(ctx, l, "")
	if err != nil {
		return err
	}
	fmt.Printf("\nOne speaker answers ARP and NDP for those addresses; %s won the election:\n", node)
	if err := kubectl("get", "servicel2statuses", "-n", lab.BarelbNamespace); err != nil {
		return err
	}

	if err := s.curlEach(ips); err != nil {
		return err
	}
	client := l.ClientHost().Netns
	fmt.Printf("$ ip -n %s neigh show   (the client's neighbour table: the addresses resolve to %s's MAC %s)\n",
		client, node, macOf(l, node))
	if out, err := exec.Command("ip", "-n", client, "neigh", "show").Output(); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(line, ips[0]+" ") || strings.Contains(line, ips[1]+" ") {
				fmt.Println("   ", line, "   <- "+nodeOfMAC(l, line))
			}
		}
	}

	step("Killing %s's speaker (SIGKILL) while the client sends a request every 10 ms", node)
	url := lab.URL(ips[0])
	p := l.StartProber("client", url)
	time.Sleep(time.Second)
	killed := time.Now()
	if err := l.Kill(node, lab.ComponentSpeaker); err != nil {
		return err
	}
	var moved time.Duration
	for time.Since(killed) < 20*time.Second {
		if mac, _ := l.Neighbour("client", ips[0]); mac != "" && !strings.EqualFold(mac, macOf(l, node)) {
			moved = time.Since(killed)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	r := p.Stop()
	to, err := announcer(ctx, l, node)
	if err != nil {
		return err
	}
	fmt.Printf("    %s took over: the client's neighbour entry for %s pointed at it %v after the kill\n", to, ips[0], moved.Round(time.Millisecond))
	fmt.Printf("    request loop: %d answered, %d failed; longest time without an answer: %v\n", r.OK, r.Failed, r.Outage.Round(time.Millisecond))
	fmt.Println("    (a killed speaker's node still forwards traffic that reaches it; cutting the node off the LAN costs about 400 ms)")
	if err := kubectl("get", "servicel2statuses", "-n", lab.BarelbNamespace); err != nil {
		return err
	}
	fmt.Printf("\n$ lab restart %s speaker\n", node)
	if err := l.Restart(node, lab.ComponentSpeaker); err != nil {
		return err
	}

	if keep {
		step("The lab keeps running until you press Ctrl-C")
		fmt.Printf(`    export KUBECONFIG=%s
    kubectl get svc,pods,servicel2statuses -A
    ip netns exec %s curl %s      # from the client on the LAN
    ip netns exec %s-node1 ip addr                # a node
    logs of every process: %s/logs
    (for a lab that outlives its terminal: go run ./e2etest/cmd/lab up; see e2etest/cmd/lab)
`, l.Kubeconfig(), client, url, l.Prefix(), l.StateDir())
		<-ctx.Done()
		return nil
	}
	fmt.Println("\n    (KEEP=1 make demo keeps the lab running and tells how to use it)")
	return nil
}

func poll(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s after %v", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// announcer waits for the node named by front's ServiceL2Status, other
// than not.
func announcer(ctx context.Context, l *lab.Lab, not string) (string, error) {
	var node string
	err := poll(ctx, 30*time.Second, "announcing node", func() bool {
		var list barelbv1beta1.ServiceL2StatusList
		if err := l.Client().List(ctx, &list); err != nil {
			return false
		}
		for _, s := range list.Items {
			if s.Status.ServiceName == "front" && s.Status.Node != "" && s.Status.Node != not {
				node = s.Status.Node
				return true
			}
		}
		return false
	})
	return node, err
}

func macOf(l *lab.Lab, node string) string {
	h, _ := l.Host(node)
	return h.MAC(lab.SegmentLAN)
}

func nodeOfMAC(l *lab.Lab, line string) string {
	for _, n := range l.Nodes() {
		if strings.Contains(line, n.MAC(lab.SegmentLAN)) {
			return n.Name
		}
	}
	return "?"
}
