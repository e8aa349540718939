package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Real nodes (Options.Kubelets): every node runs containerd and the real
// kubelet, joined to the node's network namespace only (nsenter --net), so
// that they share the machine's mount namespace: the kubelet's volume
// mounts (projected tokens, emptyDirs) must be visible to containerd,
// which bind-mounts them into containers. `ip netns exec` would give each
// of them a private mount namespace and the containers empty volumes.
//
// What keeps the nodes of one machine apart:
//   - containerd: its own root, state, gRPC socket, runc root and CNI
//     configuration, all under STATE_DIR/nodes/NODE; pod network namespaces
//     are mounted under its state folder (netns_mounts_under_state_dir);
//   - kubelet: its own root folder, pod-log folder and cgroup root
//     (/PREFIX-NODE in every cgroup v1 hierarchy), so each node's pods live
//     in a cgroup subtree of their own that Cleanup empties and removes;
//   - CNI: bridge (cni0, made by the topology) and host-local on the node's
//     pod ranges, with the IPAM state in the node's folder.

// DefaultCNIBinDir is where Debian's containernetworking-plugins are.
const DefaultCNIBinDir = "/usr/lib/cni"

// SandboxImage is the pod sandbox image every node's containerd runs; the
// lab imports it from Options.ImageDir (pause.oci.tar, `make
// cluster-images`).
const SandboxImage = "lab.barelb.io/pause:lab"

// Image is an OCI image-layout archive the lab imports into every node's
// containerd under Name (e.g. "ghcr.io/barelb/speaker:latest").
type Image struct {
	Name string
	Path string
}

// realNodeTools are the programs a real node needs besides bin/kubelet.
var realNodeTools = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter"}

func (l *Lab) checkRealNodeTools() error {
	for _, b := range []string{"kubelet", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(l.opts.BinDir, b)); err != nil {
			return fmt.Errorf("%s is missing from %s (run `make tools`): %w", b, l.opts.BinDir, err)
		}
	}
	for _, tool := range realNodeTools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing (run `make deps`: containerd, runc): %w", tool, err)
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(DefaultCNIBinDir, plugin)); err != nil {
			return fmt.Errorf("CNI plugin %s is missing (run `make deps`: containernetworking-plugins): %w", plugin, err)
		}
	}
	if _, err := os.Stat(filepath.Join(l.opts.ImageDir, "pause.oci.tar")); err != nil {
		return fmt.Errorf("the sandbox image is missing (run `make cluster-images`): %w", err)
	}
	for _, img := range l.opts.Images {
		if _, err := os.Stat(img.Path); err != nil {
			return fmt.Errorf("image %s: %w", img.Name, err)
		}
	}
	return nil
}

// nodeDir is a node's folder of containerd's and the kubelet's state.
func (l *Lab) nodeDir(node string) string {
	return filepath.Join(l.state.StateDir, "nodes", node)
}

func (l *Lab) containerdSocket(node string) string {
	return filepath.Join(l.nodeDir(node), "containerd.sock")
}

// cgroupRoot is the kubelet's --cgroup-root of a node.
func cgroupRoot(prefix, node string) string { return "/" + prefix + "-" + node }

// startRealNode starts containerd and the kubelet on a node, imports the
// images and waits until the kubelet reports the node Ready.
func (l *Lab) startRealNode(ctx context.Context, n Host) error {
	dir := l.nodeDir(n.Name)
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pods-logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := makeCgroupRoot(cgroupRoot(l.state.Prefix, n.Name)); err != nil {
		return err
	}
	files := map[string]string{
		"containerd/config.toml":    containerdConfig(dir),
		"cni/net.d/10-lab.conflist": cniConfig(dir, n),
		"kubelet/config.yaml":       kubeletConfig(dir, cgroupRoot(l.state.Prefix, n.Name)),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	if _, err := l.startNetProc(n.Name+"/containerd", n.Netns, "containerd",
		"--config", filepath.Join(dir, "containerd", "config.toml")); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, "containerd on "+n.Name, func() (bool, error) {
		if err := l.procErr(n.Name + "/containerd"); err != nil {
			return false, err
		}
		_, err := l.ctr(ctx, n.Name, "version")
		return err == nil, nil
	}); err != nil {
		return err
	}
	images := append([]Image{{Name: SandboxImage, Path: filepath.Join(l.opts.ImageDir, "pause.oci.tar")}}, l.opts.Images...)
	for _, img := range images {
		if err := l.ImportImage(ctx, n.Name, img); err != nil {
			return err
		}
	}
	_, err := l.startNetProc(n.Name+"/kubelet", n.Netns, filepath.Join(l.opts.BinDir, "kubelet"),
		"--config="+filepath.Join(dir, "kubelet", "config.yaml"),
		"--kubeconfig="+nodeKubeconfig(l.state.StateDir, n.Name),
		"--root-dir="+filepath.Join(dir, "kubelet"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.Addr(SegmentLAN, 4).String()+","+n.Addr(SegmentLAN, 6).String(),
		"--v=1")
	return err
}

// ImportImage imports an OCI archive into a node's containerd (namespace
// k8s.io, the CRI's) under img.Name, as `ctr images import` does for a
// user without a registry.
func (l *Lab) ImportImage(ctx context.Context, node string, img Image) error {
	out, err := l.ctr(ctx, node, "images", "import", "--index-name", img.Name, "--all-platforms", img.Path)
	if err != nil {
		return fmt.Errorf("importing %s into %s: %w: %s", img.Name, node, err, out)
	}
	return nil
}

// ctr runs containerd's client against a node's containerd.
func (l *Lab) ctr(ctx context.Context, node string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, "ctr", append([]string{"--address", l.containerdSocket(node), "--namespace", "k8s.io"}, args...)...).CombinedOutput()
}

// Ctr runs `ctr` (namespace k8s.io) against a node's containerd and
// returns its output, for tests that look at what runs on a node.
func (l *Lab) Ctr(ctx context.Context, node string, args ...string) ([]byte, error) {
	return l.ctr(ctx, node, args...)
}

func (l *Lab) procErr(key string) error {
	l.mu.Lock()
	p := l.procs[key]
	l.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s is not running", key)
	}
	if err := p.errExited(); err != nil {
		return fmt.Errorf("%w (see %s)", err, l.logPath(logKey(key)))
	}
	return nil
}

// waitKubelets waits until every kubelet answers its health check.
func (l *Lab) waitKubelets(ctx context.Context) error {
	for _, n := range l.state.Nodes {
		if err := l.waitHealthy(ctx, n.Netns, n.Name+"/kubelet", "http://127.0.0.1:10248/healthz", 90*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// KillNode makes a real node die as a machine does: its LAN link goes
// down (on the bridge's side, so that nothing of it reaches the LAN),
// then StopNode.
func (l *Lab) KillNode(node string) error {
	if err := l.SetLANLink(node, false); err != nil {
		return err
	}
	return l.StopNode(node)
}

// SetLANLink cuts node off the LAN, or brings it back: its port on the
// LAN bridge goes down or up (on the bridge's side, so that nothing of it
// reaches the LAN while its own link stays up, as when a switch port or
// cable fails).
func (l *Lab) SetLANLink(node string, up bool) error {
	h, err := l.Host(node)
	if err != nil {
		return err
	}
	state, verb := "down", "cutting %s off the LAN"
	if up {
		state, verb = "up", "bringing %s back on the LAN"
	}
	for _, ifc := range h.Interfaces {
		if ifc.Segment != SegmentLAN {
			continue
		}
		if out, err := exec.Command("ip", "-n", l.state.Bridges[SegmentLAN], "link", "set", ifc.Port, state).CombinedOutput(); err != nil {
			return fmt.Errorf(verb+": %w: %s", node, err, out)
		}
	}
	return nil
}

// AvoidNodePatch is a merge patch for a Deployment that keeps its pods
// off node (a required node affinity): what dies with node is then only
// what barelb runs there.
func AvoidNodePatch(node string) string {
	return `{"spec":{"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":` +
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/hostname","operator":"NotIn","values":["` + node + `"]}]}]}}}}}}}`
}

// StopNode stops what a dead machine no longer runs: the node's kubelet
// (SIGKILL), every container of the node (their cgroups emptied) and its
// containerd. Its network namespace stays; cut its links to look dead on
// the wire.
func (l *Lab) StopNode(node string) error {
	n, err := l.node(node)
	if err != nil {
		return err
	}
	for _, c := range []string{"kubelet", "containerd"} {
		if err := l.kill(n.Name + "/" + c); err != nil {
			return err
		}
	}
	killCgroup(cgroupRoot(l.state.Prefix, n.Name))
	for _, pid := range processesNaming(l.containerdSocket(n.Name)) {
		_ = killPID(pid)
	}
	return nil
}

// containerdConfig is a node's containerd configuration: everything under
// dir, the CRI with runc (cgroupfs, as the kubelet), CNI from Debian's
// plugins and the lab's own sandbox image.
func containerdConfig(dir string) string {
	c := filepath.Join(dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = false
  # This machine gives root no CAP_SYS_RESOURCE (it runs in a container):
  # the negative oom_score_adj the kubelet asks for sandboxes and critical
  # pods cannot be written, and runc fails ("can't get final child's PID
  # from pipe"). Keep it at containerd's own, as rootless setups do.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, filepath.Join(c, "root"), filepath.Join(c, "state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(c, "opt"), SandboxImage, filepath.Join(c, "runc"),
		DefaultCNIBinDir, filepath.Join(dir, "cni", "net.d"))
}

// cniConfig is a node's CNI network: the topology's bridge cni0 (its
// addresses are the pods' gateways) and host-local on the node's ranges.
func cniConfig(dir string, n Host) string {
	rng := func(cidr string) []map[string]string {
		return []map[string]string{{"subnet": cidr, "gateway": gateway(cidr)}}
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "lab",
		"plugins": []map[string]any{
			{
				"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{rng(n.PodCIDRs[0]), rng(n.PodCIDRs[1])},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}},
					"dataDir": filepath.Join(dir, "cni", "ipam"),
				},
			},
			{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, _ := json.MarshalIndent(conf, "", "  ")
	return string(data)
}

// kubeletConfig is a node's KubeletConfiguration. The kubelet serves its
// API without authentication (the lab's API server has no client
// certificate for it); image garbage collection is off because the
// images were imported and cannot be pulled again.
func kubeletConfig(dir, cgroupRoot string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
failSwapOn: false
podLogsDir: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
localStorageCapacityIsolation: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "0%%"
  imagefs.available: "0%%"
serializeImagePulls: false
resolvConf: /etc/resolv.conf
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
fileCheckFrequency: 20s
maxPods: 60
`, filepath.Join(dir, "containerd.sock"), cgroupRoot, filepath.Join(dir, "pods-logs"))
}

// cgroupHierarchies are the mounted cgroup v1 hierarchies (and the v2
// one, when mounted alone or beside them), by mount point.
func cgroupHierarchies() []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var dirs []string
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		pf := strings.Fields(post)
		if len(f) < 5 || len(pf) < 1 {
			continue
		}
		if pf[0] == "cgroup" || pf[0] == "cgroup2" {
			dirs = append(dirs, f[4])
		}
	}
	return dirs
}

// makeCgroupRoot creates a kubelet's cgroup root in every hierarchy: the
// kubelet refuses a root that does not exist.
func makeCgroupRoot(root string) error {
	for _, h := range cgroupHierarchies() {
		if err := os.MkdirAll(filepath.Join(h, root), 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s in %s: %w", root, h, err)
		}
		// A new cpuset cgroup has no CPUs and no memory nodes: nothing
		// could join it or its children (runc would fail with "can't get
		// final child's PID from pipe"). Give it its parent's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(h, root, f), v, 0o644); err != nil {
				return fmt.Errorf("setting %s of cgroup %s: %w", f, root, err)
			}
		}
	}
	return nil
}

// killCgroup kills every process in a cgroup subtree, in every hierarchy.
func killCgroup(root string) {
	for _, h := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, root), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(data)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
					_ = killPID(pid)
				}
			}
			return nil
		})
	}
}

// removeCgroup empties and removes a cgroup subtree in every hierarchy,
// leaves first. Processes take a moment to leave after SIGKILL.
func removeCgroup(root string) error {
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		killCgroup(root)
		last = nil
		for _, h := range cgroupHierarchies() {
			top := filepath.Join(h, root)
			var dirs []string
			_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
					last = fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
				}
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// unmountUnder detaches every mount point below dir, deepest first: the
// kubelet's volumes, containerd's root file systems and the pods' network
// namespaces.
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading mountinfo: %w", err)
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, unescapeMount(f[4]))
		}
	}
	var last error
	for i := len(points) - 1; i >= 0; i-- {
		if err := unmount(points[i]); err != nil {
			last = err
		}
	}
	return last
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// processesNaming lists the live processes whose arguments contain s
// (containerd's shims name their containerd's socket).
func processesNaming(s string) []int {
	return liveProcesses(func(cmdline []byte) bool { return bytes.Contains(cmdline, []byte(s)) })
}

// nodeKubeconfig is the kubeconfig a node's kubelet runs with: the node's
// own identity (system:node:NAME), as the Node authorizer wants.
func nodeKubeconfig(stateDir, node string) string {
	return filepath.Join(stateDir, "kubeconfig-node-"+node)
}

// NodeProcesses lists the processes of a real node's pods (everything in
// the node's cgroup root), for tests that look at a container from the
// machine: its capabilities, environment, mounts and network namespace.
func (l *Lab) NodeProcesses(node string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, h := range cgroupHierarchies() {
		if !strings.HasSuffix(h, "/pids") {
			continue
		}
		_ = filepath.WalkDir(filepath.Join(h, cgroupRoot(l.state.Prefix, node)), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}
