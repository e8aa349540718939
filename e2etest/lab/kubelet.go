package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// RunLabel marks the Pods the lab schedules and runs: value "true".
const RunLabel = "lab.barelb.io/run"

const heartbeatInterval = 10 * time.Second

// registerNodes creates a Ready Node object per node.
func (l *Lab) registerNodes(ctx context.Context) error {
	for _, n := range l.state.Nodes {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
				corev1.LabelHostname: n.Name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: runtime.GOARCH,
			}},
			Spec: corev1.NodeSpec{PodCIDR: n.PodCIDRs[0], PodCIDRs: n.PodCIDRs},
		}
		created, err := l.clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating node %s: %w", n.Name, err)
		}
		if l.opts.Kubelets {
			// The kubelet takes the Node over (status, heartbeats); the
			// lab only gives it its pod ranges, as the node IPAM
			// controller would.
			continue
		}
		setNodeStatus(created, n, true)
		if _, err := l.clientset.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("writing the status of node %s: %w", n.Name, err)
		}
	}
	return nil
}

// setNodeStatus writes the status a kubelet would: addresses, conditions
// (Ready as told) and capacity.
func setNodeStatus(node *corev1.Node, n Host, ready bool) {
	now := metav1.Now()
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.Addr(SegmentLAN, 4).String()},
		{Type: corev1.NodeInternalIP, Address: n.Addr(SegmentLAN, 6).String()},
		{Type: corev1.NodeHostName, Address: n.Name},
	}
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	// A condition keeps its transition time while its status stays.
	before := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range node.Status.Conditions {
		before[c.Type] = c
	}
	readyCond := cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady")
	if !ready {
		readyCond = cond(corev1.NodeReady, corev1.ConditionFalse, "KubeletNotReady")
	}
	node.Status.Conditions = []corev1.NodeCondition{
		readyCond,
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
	}
	for i, c := range node.Status.Conditions {
		if b, ok := before[c.Type]; ok && b.Status == c.Status {
			node.Status.Conditions[i].LastTransitionTime = b.LastTransitionTime
		}
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	node.Status.Capacity = capacity
	node.Status.Allocatable = capacity
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion: "v1.32.4-lab", OperatingSystem: "linux",
		Architecture: runtime.GOARCH, ContainerRuntimeVersion: "lab://0", OSImage: "barelb lab",
	}
}

// startKubeProxy runs the real kube-proxy (iptables mode) in a node, or
// in the control plane (real nodes only): the API server calls webhooks
// through their Services' cluster IPs.
func (l *Lab) startKubeProxy(n Host) error {
	var extra []string
	if n.Name == l.state.ControlPlane.Name {
		// No Node object names the control plane: its address comes from
		// here.
		extra = append(extra, "--bind-address="+n.Addr(SegmentLAN, 4).String())
	}
	_, err := l.startProc(n.Name+"/kube-proxy", n.Netns, filepath.Join(l.opts.BinDir, "kube-proxy"), append([]string{
		"--kubeconfig=" + l.state.InternalKubeconfig,
		"--hostname-override=" + n.Name,
		"--proxy-mode=iptables",
		"--conntrack-max-per-core=0",
		"--oom-score-adj=0",
		"--cluster-cidr=" + PodsV4 + "," + PodsV6,
		"--healthz-bind-address=127.0.0.1:10256",
		"--metrics-bind-address=127.0.0.1:10249",
		"--iptables-min-sync-period=0s",
		"--v=0"}, extra...)...)
	return err
}

// waitNodesReady waits until every kubelet has reported its node Ready.
func (l *Lab) waitNodesReady(ctx context.Context) error {
	for _, n := range l.state.Nodes {
		err := waitFor(ctx, 90*time.Second, "node "+n.Name+" Ready", func() (bool, error) {
			if err := l.procErr(n.Name + "/kubelet"); err != nil {
				return false, err
			}
			node, err := l.clientset.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					if c.Status == corev1.ConditionTrue {
						return true, nil
					}
					return false, fmt.Errorf("%s: %s", c.Reason, c.Message)
				}
			}
			return false, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitKubeProxies waits until every kube-proxy reports healthy (it has
// programmed its rules).
func (l *Lab) waitKubeProxies(ctx context.Context) error {
	for _, n := range l.state.Nodes {
		if err := l.waitHealthy(ctx, n.Netns, n.Name+"/kube-proxy", "http://127.0.0.1:10256/healthz", 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// waitHealthy waits until the process key (NODE/COMPONENT) answers its
// health check at url, from inside the node's namespace netns. A process
// that is gone or exits meanwhile ends the wait with its error (and its
// log's path).
func (l *Lab) waitHealthy(ctx context.Context, netns, key, url string, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, netns, network, addr)
		},
	}}
	defer hc.CloseIdleConnections()
	node, component, _ := strings.Cut(key, "/")
	var dead error
	err := waitFor(ctx, timeout, component+" on "+node, func() (bool, error) {
		if dead = l.procErr(key); dead != nil {
			return true, nil
		}
		resp, err := hc.Get(url)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return err
	}
	return dead
}

func (l *Lab) startLoops(ctx context.Context) {
	l.loops.Add(2)
	go func() {
		if l.opts.Kubelets {
			// Real kubelets keep their nodes' status.
			l.loops.Done()
			return
		}
		defer l.loops.Done()
		t := time.NewTicker(heartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				l.heartbeat(ctx)
			}
		}
	}()
	go func() {
		defer l.loops.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			l.syncPods(ctx)
			select {
			case <-ctx.Done():
				l.stopAllPods()
				return
			case <-t.C:
			}
		}
	}()
}

// heartbeat keeps every node Ready, but those SetNodeReady made NotReady.
func (l *Lab) heartbeat(ctx context.Context) {
	for _, n := range l.state.Nodes {
		if err := l.writeNodeStatus(ctx, n); err != nil && ctx.Err() == nil {
			l.log.Error(err, "heartbeat", "node", n.Name)
		}
	}
}

// writeNodeStatus writes a node's status once, Ready unless SetNodeReady
// said otherwise. statusMu makes the read of that setting and the write
// one step, so that a heartbeat cannot undo SetNodeReady.
func (l *Lab) writeNodeStatus(ctx context.Context, n Host) error {
	l.statusMu.Lock()
	defer l.statusMu.Unlock()
	node, err := l.clientset.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading node %s: %w", n.Name, err)
	}
	setNodeStatus(node, n, !l.notReady[n.Name])
	if _, err := l.clientset.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status of node %s: %w", n.Name, err)
	}
	return nil
}

// SetNodeReady sets a node's Ready condition, as its kubelet would when it
// stops (False) or recovers (True), writes it at once and keeps it in
// every heartbeat. Nothing runs on the node changes: its speaker and pods
// go on as before.
func (l *Lab) SetNodeReady(ctx context.Context, name string, ready bool) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	l.statusMu.Lock()
	if l.notReady == nil {
		l.notReady = map[string]bool{}
	}
	l.notReady[name] = !ready
	l.statusMu.Unlock()
	// Another writer of the Node in between makes this write conflict;
	// retry.
	return waitFor(ctx, 10*time.Second, "the status of node "+name, func() (bool, error) {
		err := l.writeNodeStatus(ctx, n)
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// podRun is a pod the lab runs.
type podRun struct {
	uid      types.UID
	key      string // namespace/name
	node     string
	netns    string
	ipv4     netip.Addr
	ipv6     netip.Addr
	proc     *proc
	reported bool
	started  metav1.Time
}

// syncPods is one pass of the scheduler and kubelet over the lab's pods.
func (l *Lab) syncPods(ctx context.Context) {
	list, err := l.clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: RunLabel + "=true"})
	if err != nil {
		if ctx.Err() == nil {
			l.log.Error(err, "listing pods")
		}
		return
	}
	seen := map[types.UID]bool{}
	for i := range list.Items {
		pod := &list.Items[i]
		seen[pod.UID] = true
		if err := l.syncPod(ctx, pod); err != nil && ctx.Err() == nil {
			l.log.Error(err, "syncing pod", "pod", pod.Namespace+"/"+pod.Name)
		}
	}
	l.mu.Lock()
	var gone []*podRun
	for uid, r := range l.pods {
		if !seen[uid] {
			gone = append(gone, r)
			delete(l.pods, uid)
		}
	}
	l.mu.Unlock()
	for _, r := range gone {
		l.stopPod(r)
	}
}

func (l *Lab) syncPod(ctx context.Context, pod *corev1.Pod) error {
	pods := l.clientset.CoreV1().Pods(pod.Namespace)
	l.mu.Lock()
	r := l.pods[pod.UID]
	l.mu.Unlock()
	if pod.DeletionTimestamp != nil {
		if r != nil {
			l.mu.Lock()
			delete(l.pods, pod.UID)
			l.mu.Unlock()
			l.stopPod(r)
		}
		if _, err := l.node(pod.Spec.NodeName); err != nil {
			return nil
		}
		zero := int64(0)
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("finishing the deletion: %w", err)
		}
		return nil
	}
	if pod.Spec.NodeName == "" {
		node, err := l.schedule(ctx, pod)
		if err != nil {
			return err
		}
		binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
			Target: corev1.ObjectReference{Kind: "Node", Name: node}}
		if err := pods.Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("binding to %s: %w", node, err)
		}
		pod.Spec.NodeName = node
	}
	n, err := l.node(pod.Spec.NodeName)
	if err != nil {
		return nil // not one of ours
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	if r == nil {
		if r, err = l.startPod(ctx, pod, n); err != nil {
			return err
		}
	}
	if r.proc.exited() && r.reported {
		// Restart policy Always, the simple way.
		l.log.Info("pod process exited, restarting", "pod", r.key, "err", r.proc.err)
		l.mu.Lock()
		delete(l.pods, pod.UID)
		l.mu.Unlock()
		l.stopPod(r)
		return nil
	}
	if !r.reported || pod.Status.PodIP == "" {
		if err := l.reportPod(ctx, pod, r, n); err != nil {
			return err
		}
		r.reported = true
	}
	return nil
}

// schedule picks the node of a pod: the one a nodeSelector on
// kubernetes.io/hostname names, else the one with the fewest lab pods.
func (l *Lab) schedule(ctx context.Context, pod *corev1.Pod) (string, error) {
	if want, ok := pod.Spec.NodeSelector[corev1.LabelHostname]; ok {
		if _, err := l.node(want); err != nil {
			return "", fmt.Errorf("nodeSelector: %w", err)
		}
		return want, nil
	}
	list, err := l.clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: RunLabel + "=true"})
	if err != nil {
		return "", fmt.Errorf("counting pods per node: %w", err)
	}
	count := map[string]int{}
	for _, p := range list.Items {
		count[p.Spec.NodeName]++
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	best := ""
	nodes := l.state.Nodes
	for i := range nodes {
		n := nodes[(l.rrIndex+i)%len(nodes)].Name
		if best == "" || count[n] < count[best] {
			best = n
		}
	}
	l.rrIndex++
	return best, nil
}

func podPorts(pod *corev1.Pod) []int {
	var ports []int
	seen := map[int32]bool{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) && !seen[p.ContainerPort] {
				seen[p.ContainerPort] = true
				ports = append(ports, int(p.ContainerPort))
			}
		}
	}
	if len(ports) == 0 {
		ports = []int{80}
	}
	return ports
}

// startPod gives a pod a namespace, a link to its node's cni0 and
// addresses, starts its process and waits until it listens.
func (l *Lab) startPod(ctx context.Context, pod *corev1.Pod, n Host) (*podRun, error) {
	l.mu.Lock()
	l.podSeq++
	seq := l.podSeq
	used := map[netip.Addr]bool{}
	for _, r := range l.pods {
		used[r.ipv4] = true
	}
	l.mu.Unlock()
	p4 := netip.MustParsePrefix(n.PodCIDRs[0])
	p6 := netip.MustParsePrefix(n.PodCIDRs[1])
	var ip4, ip6 netip.Addr
	for a := p4.Addr().Next().Next(); p4.Contains(a); a = a.Next() {
		if !used[a] && a.As4()[3] != 255 {
			ip4 = a
			break
		}
	}
	if !ip4.IsValid() {
		return nil, fmt.Errorf("node %s has no free pod address", n.Name)
	}
	b := p6.Addr().As16()
	b[15] = ip4.As4()[3]
	ip6 = netip.AddrFrom16(b)
	r := &podRun{
		uid: pod.UID, key: pod.Namespace + "/" + pod.Name, node: n.Name,
		netns: fmt.Sprintf("%s-p%d", l.state.Prefix, seq), ipv4: ip4, ipv6: ip6,
	}
	link := fmt.Sprintf("%sp%d", l.state.Prefix, seq)
	if err := ipCmd("netns", "add", r.netns); err != nil {
		return nil, err
	}
	fail := func(err error) (*podRun, error) {
		_ = ipCmd("netns", "del", r.netns)
		return nil, err
	}
	if err := ipBatch(n.Netns, []string{
		fmt.Sprintf("link add %s type veth peer name eth0 netns %s", link, r.netns),
		fmt.Sprintf("link set %s master cni0 up", link),
	}); err != nil {
		return fail(err)
	}
	if err := ipBatch(r.netns, []string{
		"link set lo up", "link set eth0 up",
		fmt.Sprintf("addr add %s/%d dev eth0", ip4, p4.Bits()),
		fmt.Sprintf("addr add %s/%d dev eth0 nodad", ip6, p6.Bits()),
		"route add default via " + gateway(n.PodCIDRs[0]),
		"route add ::/0 via " + gateway(n.PodCIDRs[1]),
	}); err != nil {
		return fail(err)
	}
	ports := podPorts(pod)
	var ps []string
	for _, p := range ports {
		ps = append(ps, strconv.Itoa(p))
	}
	proc, err := l.startProc("pod/"+pod.Namespace+"/"+pod.Name, r.netns, l.opts.LabBinary,
		"podserver", "--name", pod.Name, "--ports", strings.Join(ps, ","), "--lab", l.state.StateDir)
	if err != nil {
		return fail(err)
	}
	r.proc = proc
	addr := net.JoinHostPort(ip4.String(), strconv.Itoa(ports[0]))
	err = waitFor(ctx, 10*time.Second, "pod "+r.key+" to listen", func() (bool, error) {
		if err := proc.errExited(); err != nil {
			return false, err
		}
		c, err := dialIn(ctx, r.netns, "tcp", addr)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if err != nil {
		proc.stop(0)
		return fail(err)
	}
	r.started = metav1.Now()
	l.mu.Lock()
	l.pods[pod.UID] = r
	l.mu.Unlock()
	l.log.V(1).Info("pod started", "pod", r.key, "node", n.Name, "ip", ip4)
	return r, nil
}

func (l *Lab) reportPod(ctx context.Context, pod *corev1.Pod, r *podRun, n Host) error {
	pod, err := l.clientset.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the pod: %w", err)
	}
	if pod.UID != r.uid {
		return nil
	}
	now := r.started
	pod.Status.Phase = corev1.PodRunning
	pod.Status.HostIP = n.Addr(SegmentLAN, 4).String()
	pod.Status.HostIPs = []corev1.HostIP{{IP: pod.Status.HostIP}, {IP: n.Addr(SegmentLAN, 6).String()}}
	pod.Status.PodIP = r.ipv4.String()
	pod.Status.PodIPs = []corev1.PodIP{{IP: r.ipv4.String()}, {IP: r.ipv6.String()}}
	pod.Status.StartTime = &now
	pod.Status.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		started := true
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Ready: true, Started: &started, Image: c.Image, ImageID: "lab://podserver",
			ContainerID: fmt.Sprintf("lab://%d", r.proc.cmd.Process.Pid),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if _, err := l.clientset.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status: %w", err)
	}
	return nil
}

func (l *Lab) stopPod(r *podRun) {
	if r.proc != nil {
		r.proc.stop(0)
		l.mu.Lock()
		if l.procs["pod/"+r.key] == r.proc {
			delete(l.procs, "pod/"+r.key)
		}
		l.mu.Unlock()
	}
	if err := ipCmd("netns", "del", r.netns); err != nil {
		l.log.Error(err, "removing a pod's namespace", "pod", r.key)
	}
	l.log.V(1).Info("pod stopped", "pod", r.key)
}

func (l *Lab) stopAllPods() {
	l.mu.Lock()
	pods := l.pods
	l.pods = map[types.UID]*podRun{}
	l.mu.Unlock()
	for _, r := range pods {
		l.stopPod(r)
	}
}
