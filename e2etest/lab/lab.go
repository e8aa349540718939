package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/barelb/barelb/internal/testenv"
)

// DefaultStateRoot holds one folder per lab.
const DefaultStateRoot = "/tmp/barelb-lab"

// Options change what Up builds.
type Options struct {
	// Nodes is the number of nodes; 3 when 0.
	Nodes int
	// Prefix names the lab's namespaces, links and state folder;
	// "blb" and 4 random hex digits when empty.
	Prefix string
	// StateRoot is the folder holding the lab's state folder;
	// DefaultStateRoot when empty.
	StateRoot string
	// CRDDir holds barelb's CRDs, installed once the API server is up;
	// the repository's config/crd/bases when empty.
	CRDDir string
	// RBACDir holds the RBAC barelb's programs run with (ServiceAccounts,
	// roles and bindings), applied before they start; the repository's
	// config/rbac when empty.
	RBACDir string
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-proxy and (once built) speaker; the repository's bin/ when empty.
	BinDir string
	// LabBinary is run in "podserver" mode for every pod; the running
	// executable when empty (a test binary must then call
	// [RunHelperMode] from TestMain).
	LabBinary string
	// Barelb runs barelb once the cluster is up: bin/controller in the
	// control plane and bin/speaker on every node (`make build`), with a
	// random memberlist secret shared by the speakers. Up waits until all
	// of them are ready.
	Barelb bool
	// SecondLAN puts the even nodes and a second client ("client2") on a
	// second LAN segment (LAN2v4, LAN2v6: another bridge, as a VLAN
	// would be), with the router between the two LANs.
	SecondLAN bool
	// SpeakerArgs are extra flags for every speaker.
	SpeakerArgs []string
	// Kubelets makes every node a real one: containerd (runc, CNI bridge
	// and host-local) and the real kubelet, which registers the node and
	// runs its pods in containers; the control plane adds kube-scheduler,
	// the kube-controller-manager's workload controllers and kube-proxy
	// (so that the API server reaches webhooks through their Services).
	// Nothing of barelb is installed: no CRDs, no namespace, no RBAC; a
	// test installs it as a user does. Options.Barelb must be false. See
	// node.go.
	Kubelets bool
	// ImageDir holds pause.oci.tar, the sandbox image (`make
	// cluster-images`); the repository's bin/images when empty.
	ImageDir string
	// Images are imported into every node's containerd (with Kubelets).
	Images []Image
	// KeepOnFailure leaves whatever a failed Up made, for inspection
	// (`lab down` removes it).
	KeepOnFailure bool
	// Log receives progress messages; discarded when zero.
	Log logr.Logger
}

// Lab is a running lab.
type Lab struct {
	opts  Options
	log   logr.Logger
	state State
	token string
	// identityTokens are the tokens of barelb's ServiceAccounts, by
	// component.
	identityTokens map[string]string
	// nodeTokens are the real nodes' kubelets' tokens, by node.
	nodeTokens map[string]string
	cancel     context.CancelFunc
	loops      sync.WaitGroup

	restCfg   *rest.Config
	clientset kubernetes.Interface
	client    client.Client
	listener  net.Listener

	netnsCreated bool
	// memberlistKey is the speakers' BARELB_MEMBERLIST_KEY;
	// memberlistKeys are the nodes' own, where SetMemberlistKey set one.
	memberlistKey  string
	memberlistKeys map[string][]string

	// statusMu makes each write of a Node's status one step (see
	// writeNodeStatus); notReady names the nodes SetNodeReady made
	// NotReady.
	statusMu sync.Mutex
	notReady map[string]bool

	mu      sync.Mutex
	procs   map[string]*proc
	pods    map[types.UID]*podRun
	podSeq  int
	rrIndex int
	down    bool
}

// Up builds and starts a lab. On failure it removes what it made unless
// opts.KeepOnFailure. The lab runs its loops (scheduler, kubelet, node
// heartbeats) in this process until Down.
func Up(ctx context.Context, opts Options) (_ *Lab, err error) {
	start := time.Now()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 || opts.Nodes > 40 {
		return nil, fmt.Errorf("nodes must be between 1 and 40, not %d", opts.Nodes)
	}
	if opts.Prefix == "" {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("choosing a prefix: %w", err)
		}
		opts.Prefix = "blb" + hex.EncodeToString(b)
	}
	if len(opts.Prefix) > 8 {
		return nil, fmt.Errorf("prefix %q is longer than 8 characters (interface names must fit in 15)", opts.Prefix)
	}
	if opts.StateRoot == "" {
		opts.StateRoot = DefaultStateRoot
	}
	if opts.CRDDir == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return nil, err
		}
		opts.CRDDir = filepath.Join(root, "config", "crd", "bases")
	}
	if opts.RBACDir == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return nil, err
		}
		opts.RBACDir = filepath.Join(root, "config", "rbac")
	}
	if opts.BinDir == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return nil, fmt.Errorf("finding bin/: %w", err)
		}
		opts.BinDir = filepath.Join(root, "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s is missing from %s (run `make tools`): %w", b, opts.BinDir, err)
		}
	}
	if opts.Barelb {
		for _, b := range barelbBinaries {
			if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
				return nil, fmt.Errorf("%s is missing from %s (run `make build`): %w", b, opts.BinDir, err)
			}
		}
	}
	if opts.ImageDir == "" {
		opts.ImageDir = filepath.Join(opts.BinDir, "images")
	}
	if opts.Kubelets && opts.Barelb {
		return nil, errors.New("options Kubelets and Barelb exclude each other: with real kubelets barelb is installed from its manifests")
	}
	if opts.LabBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the lab binary: %w", err)
		}
		opts.LabBinary = exe
	}
	for _, tool := range []string{"ip", "iptables", "conntrack", "/usr/lib/frr/bgpd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is missing (run `make deps`): %w", tool, err)
		}
	}
	if err := checkRootRoutes(); err != nil {
		return nil, err
	}
	l := &Lab{
		opts:  opts,
		log:   opts.Log,
		state: plan(opts.Prefix, opts.Nodes, opts.SecondLAN),
		procs: map[string]*proc{},
		pods:  map[types.UID]*podRun{},
	}
	l.state.StateDir = filepath.Join(opts.StateRoot, opts.Prefix)
	l.state.Barelb = opts.Barelb
	l.state.Kubelets = opts.Kubelets
	if opts.Kubelets {
		if err := l.checkRealNodeTools(); err != nil {
			return nil, err
		}
	}
	if l.memberlistKey, err = newMemberlistKey(); err != nil {
		return nil, err
	}
	l.state.LabBinary = opts.LabBinary
	// The folder may exist (the CLI puts the lab binary there first), but
	// not hold a lab.
	if _, err := os.Stat(filepath.Join(l.state.StateDir, "state.json")); err == nil {
		return nil, fmt.Errorf("state folder %s holds a lab already: another lab uses prefix %s", l.state.StateDir, opts.Prefix)
	}
	if nss, err := labNamespaces(opts.Prefix); err != nil || len(nss) > 0 {
		return nil, fmt.Errorf("namespaces of prefix %s exist already (%v): %w", opts.Prefix, nss, err)
	}
	if err := os.MkdirAll(filepath.Join(l.state.StateDir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("creating the state folder: %w", err)
	}
	if err := os.Chmod(opts.StateRoot, 0o755); err != nil {
		return nil, fmt.Errorf("opening the state root to FRR: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	defer func() {
		if err != nil {
			if opts.KeepOnFailure {
				l.log.Info("keeping the failed lab", "prefix", opts.Prefix, "stateDir", l.state.StateDir)
				l.stopLoops()
				return
			}
			l.Down()
		}
	}()
	if err := l.buildTopology(); err != nil {
		return nil, fmt.Errorf("building the topology: %w", err)
	}
	l.log.Info("topology up", "prefix", opts.Prefix, "elapsed", time.Since(start).Round(time.Millisecond))
	if err := l.startRouter(); err != nil {
		return nil, fmt.Errorf("starting FRR: %w", err)
	}
	if err := l.startControlPlane(ctx); err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	l.log.Info("API server ready", "elapsed", time.Since(start).Round(time.Millisecond))
	if l.clientset, err = kubernetes.NewForConfig(l.restCfg); err != nil {
		return nil, fmt.Errorf("creating a clientset: %w", err)
	}
	scheme, err := testenv.NewScheme()
	if err != nil {
		return nil, err
	}
	if l.client, err = client.New(l.restCfg, client.Options{Scheme: scheme}); err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	if !opts.Kubelets {
		if _, err := envtest.InstallCRDs(l.restCfg, envtest.CRDInstallOptions{Paths: []string{opts.CRDDir}, ErrorIfPathMissing: true}); err != nil {
			return nil, fmt.Errorf("installing barelb's CRDs from %s: %w", opts.CRDDir, err)
		}
	}
	if err := l.startKubeControllerManager(); err != nil {
		return nil, err
	}
	if err := l.registerNodes(ctx); err != nil {
		return nil, fmt.Errorf("registering the nodes: %w", err)
	}
	if opts.Kubelets {
		if err := l.startScheduler(); err != nil {
			return nil, err
		}
		if err := l.startKubeProxy(l.state.ControlPlane); err != nil {
			return nil, err
		}
		if err := Parallel(len(l.state.Nodes), len(l.state.Nodes), func(i int) error {
			return l.startRealNode(ctx, l.state.Nodes[i])
		}); err != nil {
			return nil, err
		}
	}
	for _, n := range l.state.Nodes {
		if err := l.startKubeProxy(n); err != nil {
			return nil, err
		}
	}
	l.startLoops(loopCtx)
	if err := l.waitKubeProxies(ctx); err != nil {
		return nil, err
	}
	if opts.Kubelets {
		if err := l.waitKubelets(ctx); err != nil {
			return nil, err
		}
		if err := l.waitNodesReady(ctx); err != nil {
			return nil, err
		}
		l.log.Info("kubelets ready", "elapsed", time.Since(start).Round(time.Millisecond))
	}
	if err := l.waitRouter(ctx); err != nil {
		return nil, err
	}
	if !opts.Kubelets {
		if err := l.createBarelbNamespace(ctx); err != nil {
			return nil, err
		}
		if err := l.applyRBAC(ctx); err != nil {
			return nil, err
		}
	}
	if opts.Barelb {
		if err := l.startBarelb(ctx); err != nil {
			return nil, fmt.Errorf("starting barelb: %w", err)
		}
		l.log.Info("barelb ready", "elapsed", time.Since(start).Round(time.Millisecond))
	}
	if err := l.writeState(); err != nil {
		return nil, err
	}
	l.log.Info("lab up", "prefix", opts.Prefix, "elapsed", time.Since(start).Round(time.Millisecond))
	return l, nil
}

func (l *Lab) writeState() error {
	data, err := json.MarshalIndent(l.state, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the lab's state: %w", err)
	}
	p := filepath.Join(l.state.StateDir, "state.json")
	if err := os.WriteFile(p+".tmp", data, 0o644); err != nil {
		return fmt.Errorf("writing the lab's state: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("writing the lab's state: %w", err)
	}
	return nil
}

// SetSupervisorPID records the process that keeps the lab running, for
// `lab down`.
func (l *Lab) SetSupervisorPID(pid int) error {
	l.state.SupervisorPID = pid
	return l.writeState()
}

func (l *Lab) stopLoops() {
	l.cancel()
	l.loops.Wait()
}

// Down stops everything the lab started and removes its namespaces and
// state folder. It is safe to call more than once.
func (l *Lab) Down() {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return
	}
	l.down = true
	l.mu.Unlock()
	start := time.Now()
	l.stopLoops()
	if l.listener != nil {
		_ = l.listener.Close()
	}
	l.mu.Lock()
	procs := make([]*proc, 0, len(l.procs))
	for _, p := range l.procs {
		procs = append(procs, p)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(0) }()
	}
	wg.Wait()
	if err := Cleanup(l.opts.Prefix, l.opts.StateRoot); err != nil {
		l.log.Error(err, "cleaning up")
	}
	l.log.Info("lab down", "prefix", l.opts.Prefix, "elapsed", time.Since(start).Round(time.Millisecond))
}

// State returns the lab's description.
func (l *Lab) State() State { return l.state }

// Prefix returns the lab's unique name prefix.
func (l *Lab) Prefix() string { return l.state.Prefix }

// StateDir returns the lab's state folder.
func (l *Lab) StateDir() string { return l.state.StateDir }

// Kubeconfig returns the path of a kubeconfig usable from the root
// namespace (through the loopback forwarder), e.g. by kubectl.
func (l *Lab) Kubeconfig() string { return l.state.Kubeconfig }

// InternalKubeconfig returns the path of a kubeconfig for programs run
// inside the lab's namespaces.
func (l *Lab) InternalKubeconfig() string { return l.state.InternalKubeconfig }

// RESTConfig returns an administrator's configuration whose connections
// are opened inside the control-plane namespace; the root namespace needs
// no address or route for it.
func (l *Lab) RESTConfig() *rest.Config { return rest.CopyConfig(l.restCfg) }

// Client returns a controller-runtime client with barelb's scheme.
func (l *Lab) Client() client.Client { return l.client }

// Clientset returns a client-go clientset.
func (l *Lab) Clientset() kubernetes.Interface { return l.clientset }

// Nodes returns the nodes.
func (l *Lab) Nodes() []Host { return append([]Host(nil), l.state.Nodes...) }

// ClientHost returns the client on the LAN.
func (l *Lab) ClientHost() Host { return l.state.Client }

// Router returns the FRR router.
func (l *Lab) Router() Host { return l.state.Router }

// ControlPlane returns the control-plane host.
func (l *Lab) ControlPlane() Host { return l.state.ControlPlane }

// Ext returns the host behind the router.
func (l *Lab) Ext() Host { return l.state.Ext }

// Host returns a host by name ("cp", "client", "router", "ext", a node).
func (l *Lab) Host(name string) (Host, error) { return l.state.Host(name) }

// Exec runs a command in a host's namespace and returns its combined
// output.
func (l *Lab) Exec(ctx context.Context, host string, cmd ...string) ([]byte, error) {
	return Exec(ctx, &l.state, host, cmd...)
}

// Exec runs a command in a host's namespace of the lab described by s.
func Exec(ctx context.Context, s *State, host string, cmd ...string) ([]byte, error) {
	if len(cmd) == 0 {
		return nil, errors.New("no command")
	}
	h, err := s.Host(host)
	if err != nil {
		return nil, err
	}
	out, err := nsCommand(ctx, h.Netns, cmd[0], cmd[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%v in %s: %w", cmd, host, err)
	}
	return out, nil
}

// DialContext opens a connection from inside a host's namespace.
func (l *Lab) DialContext(ctx context.Context, host, network, address string) (net.Conn, error) {
	h, err := l.state.Host(host)
	if err != nil {
		return nil, err
	}
	return dialIn(ctx, h.Netns, network, address)
}

// Kill sends SIGKILL to a node's "speaker" or "kube-proxy" (or, with host
// "cp", to the "controller").
func (l *Lab) Kill(host, component string) error {
	key, err := l.procKey(host, component)
	if err != nil {
		return err
	}
	return l.kill(key)
}

// Restart (re)starts a node's "speaker" (bin/speaker, when it exists) or
// "kube-proxy" (or, with host "cp", the "controller") with the flags and
// environment Up gave it. A running one is stopped first (SIGTERM; see
// [Lab.Stop]). It does not wait for readiness: see [Lab.WaitReady].
func (l *Lab) Restart(host, component string) error {
	key, err := l.procKey(host, component)
	if err != nil {
		return err
	}
	if component == ComponentSpeaker || component == ComponentController {
		if err := l.checkBarelbBinaries(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	p := l.procs[key]
	l.mu.Unlock()
	if p != nil && !p.exited() {
		// Two speakers (or controllers) cannot share their ports.
		p.stop(stopGrace)
	}
	switch component {
	case ComponentKubeProxy:
		n, _ := l.node(host)
		return l.startKubeProxy(n)
	case ComponentSpeaker:
		n, _ := l.node(host)
		return l.startSpeaker(n)
	default:
		return l.startController()
	}
}

func (l *Lab) node(name string) (Host, error) {
	for _, n := range l.state.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Host{}, fmt.Errorf("no node %q in lab %s", name, l.state.Prefix)
}
