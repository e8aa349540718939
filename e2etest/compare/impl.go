package compare

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/testenv"
)

// implementation is one of the two load balancers under comparison: how
// the lab starts, stops and waits for its programs, and where its
// configuration lives.
type implementation interface {
	// Name heads the table's column.
	Name() string
	// Group is the API group of its configuration (IPAddressPool, …).
	Group() string
	// Namespace holds its configuration and ServiceL2Statuses.
	Namespace() string
	// PoolAnnotation is the annotation its controller writes next to a
	// Service's address (the plain client's ceiling writes the same).
	PoolAnnotation() string
	// PoolRequestAnnotation asks for an address from a given pool.
	PoolRequestAnnotation() string
	// BGPPeerVersion is the API version of its BGPPeer.
	BGPPeerVersion() string
	// LabOptions are the lab's options for it.
	LabOptions() lab.Options
	// Install runs once the lab is up: CRDs, Secrets, Pods, programs; it
	// returns when the controller and every speaker are ready.
	Install(ctx context.Context, l *lab.Lab) error
	// ControllerKey and SpeakerKey are the lab's keys of its processes.
	ControllerKey() string
	SpeakerKey(node string) string
	// StartController and StartSpeaker (re)start a program; Wait… return
	// when it is ready.
	StartController(l *lab.Lab) error
	StartSpeaker(l *lab.Lab, node string) error
	WaitController(ctx context.Context, l *lab.Lab) error
	WaitSpeaker(ctx context.Context, l *lab.Lab, node string) error
	// StopGrace is how long a stopped speaker may take between SIGTERM
	// and SIGKILL (its manifests' terminationGracePeriodSeconds).
	StopGrace() time.Duration
}

// barelb is this repository's controller and speaker, as the lab runs them.
type barelb struct{}

func (barelb) Name() string                  { return "barelb" }
func (barelb) Group() string                 { return "barelb.io" }
func (barelb) Namespace() string             { return lab.BarelbNamespace }
func (barelb) PoolAnnotation() string        { return "barelb.io/ip-allocated-from-pool" }
func (barelb) PoolRequestAnnotation() string { return "barelb.io/address-pool" }
func (barelb) BGPPeerVersion() string        { return "v1beta1" }
func (barelb) LabOptions() lab.Options {
	return lab.Options{Nodes: 3, Barelb: true}
}

// StopGrace: terminationGracePeriodSeconds of barelb's DaemonSet
// (config/speaker/daemonset.yaml).
func (barelb) StopGrace() time.Duration                { return 30 * time.Second }
func (barelb) Install(context.Context, *lab.Lab) error { return nil }
func (barelb) ControllerKey() string                   { return lab.ComponentController }
func (barelb) SpeakerKey(node string) string           { return node + "/" + lab.ComponentSpeaker }
func (barelb) StartController(l *lab.Lab) error {
	return l.Restart("cp", lab.ComponentController)
}
func (barelb) StartSpeaker(l *lab.Lab, node string) error {
	return l.Restart(node, lab.ComponentSpeaker)
}
func (barelb) WaitController(ctx context.Context, l *lab.Lab) error {
	return l.WaitReady(ctx, "cp", lab.ComponentController)
}
func (barelb) WaitSpeaker(ctx context.Context, l *lab.Lab, node string) error {
	return l.WaitReady(ctx, node, lab.ComponentSpeaker)
}

// MetalLB's names, as its manifests (config/manifests/metallb-native.yaml
// of the module) set them.
const (
	metallbNamespace = "metallb-system"
	// metallbMLSecret is the memberlist Secret (METALLB_ML_SECRET_NAME)
	// and metallbMLKey its key (the file name the speaker reads).
	metallbMLSecret = "memberlist"
	metallbMLKey    = "secretkey"
	// metallbMLLabels select the speaker Pods (METALLB_ML_LABELS).
	metallbMLLabels = "app=metallb,component=speaker"
	// metallbPort is --port of both programs (metrics; the probes of
	// their manifests GET /metrics there).
	metallbPort = "7472"
)

// metallb is MetalLB's released controller and speaker from bin/metallb/
// (`make metallb`).
type metallb struct {
	// dir holds controller, speaker and crds/.
	dir string
	// version is the one e2etest/tools/metallb/go.mod pins.
	version string
}

func newMetalLB() (*metallb, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	m := &metallb{dir: filepath.Join(root, "bin", "metallb")}
	mod, err := os.ReadFile(filepath.Join(root, "e2etest", "tools", "metallb", "go.mod"))
	if err != nil {
		return nil, fmt.Errorf("reading MetalLB's version: %w", err)
	}
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[len(f)-2] == "go.universe.tf/metallb" {
			m.version = f[len(f)-1]
		}
	}
	if m.version == "" {
		return nil, errors.New("e2etest/tools/metallb/go.mod requires no go.universe.tf/metallb")
	}
	for _, f := range []string{"controller", "speaker", "crds"} {
		if _, err := os.Stat(filepath.Join(m.dir, f)); err != nil {
			return nil, fmt.Errorf("MetalLB's %s is missing from %s (run `make metallb`): %w", f, m.dir, err)
		}
	}
	return m, nil
}

func (m *metallb) Name() string                { return "MetalLB " + m.version }
func (*metallb) Group() string                 { return "metallb.io" }
func (*metallb) Namespace() string             { return metallbNamespace }
func (*metallb) PoolAnnotation() string        { return "metallb.io/ip-allocated-from-pool" }
func (*metallb) PoolRequestAnnotation() string { return "metallb.universe.tf/address-pool" }
func (*metallb) BGPPeerVersion() string        { return "v1beta2" }
func (*metallb) LabOptions() lab.Options {
	return lab.Options{Nodes: 3}
}

// StopGrace: terminationGracePeriodSeconds of MetalLB's DaemonSet.
func (*metallb) StopGrace() time.Duration      { return 2 * time.Second }
func (*metallb) ControllerKey() string         { return "metallb-controller" }
func (*metallb) SpeakerKey(node string) string { return node + "/metallb-speaker" }

func (m *metallb) secretDir(l *lab.Lab) string {
	return filepath.Join(l.StateDir(), "metallb-memberlist")
}

// Install applies MetalLB's CRDs, its namespace, the memberlist Secret
// (also written where the speakers read it, as the DaemonSet mounts it)
// and a speaker Pod object per node, then starts the programs.
func (m *metallb) Install(ctx context.Context, l *lab.Lab) error {
	if _, err := envtest.InstallCRDs(l.RESTConfig(), envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(m.dir, "crds")}, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("installing MetalLB's CRDs: %w", err)
	}
	cs := l.Clientset()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metallbNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s: %w", metallbNamespace, err)
	}
	b := make([]byte, 128)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("making the memberlist secret: %w", err)
	}
	key := hex.EncodeToString(b)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: metallbMLSecret, Namespace: metallbNamespace},
		Data: map[string][]byte{metallbMLKey: []byte(key)}}
	if _, err := cs.CoreV1().Secrets(metallbNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the memberlist Secret: %w", err)
	}
	if err := os.MkdirAll(m.secretDir(l), 0o700); err != nil {
		return fmt.Errorf("mounting the memberlist Secret: %w", err)
	}
	if err := os.WriteFile(filepath.Join(m.secretDir(l), metallbMLKey), []byte(key), 0o600); err != nil {
		return fmt.Errorf("mounting the memberlist Secret: %w", err)
	}
	for _, n := range l.Nodes() {
		if err := m.createSpeakerPod(ctx, l, n); err != nil {
			return err
		}
	}
	if err := m.StartController(l); err != nil {
		return err
	}
	for _, n := range l.Nodes() {
		if err := m.StartSpeaker(l, n.Name); err != nil {
			return err
		}
	}
	if err := m.WaitController(ctx, l); err != nil {
		return err
	}
	for _, n := range l.Nodes() {
		if err := m.WaitSpeaker(ctx, l, n.Name); err != nil {
			return err
		}
	}
	return nil
}

// createSpeakerPod makes the Pod object the DaemonSet would make for a
// node's speaker (host network: its IP is the node's), Running and Ready:
// MetalLB's speakers list these Pods (METALLB_ML_LABELS) to find the
// memberlist members to join. The lab's kubelet leaves it alone (no
// lab.barelb.io/run label): the speaker runs as a process of the lab.
func (m *metallb) createSpeakerPod(ctx context.Context, l *lab.Lab, n lab.Host) error {
	ip := n.Addr(lab.SegmentLAN, 4).String()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "speaker-" + n.Name, Namespace: metallbNamespace,
			Labels: map[string]string{"app": "metallb", "component": "speaker"}},
		Spec: corev1.PodSpec{NodeName: n.Name, HostNetwork: true,
			Containers: []corev1.Container{{Name: "speaker", Image: "quay.io/metallb/speaker:" + m.version}}},
	}
	created, err := l.Clientset().CoreV1().Pods(metallbNamespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the speaker Pod of %s: %w", n.Name, err)
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, HostIP: ip, PodIP: ip,
		PodIPs:     []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := l.Clientset().CoreV1().Pods(metallbNamespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the speaker Pod's status of %s: %w", n.Name, err)
	}
	return nil
}

// StartController runs MetalLB's controller with its Deployment's
// arguments and environment. The validating webhook is off: it needs a
// Service in front of the controller that the lab has no network for, and
// no scenario here writes invalid configuration.
func (m *metallb) StartController(l *lab.Lab) error {
	return l.StartProcess(m.ControllerKey(), "cp",
		[]string{"KUBECONFIG=" + l.InternalKubeconfig(), "METALLB_NAMESPACE=" + metallbNamespace,
			"METALLB_ML_SECRET_NAME=" + metallbMLSecret, "METALLB_DEPLOYMENT=controller"},
		filepath.Join(m.dir, "controller"),
		"--port="+metallbPort, "--log-level=info", "--tls-min-version=VersionTLS12",
		"--webhook-mode=disabled", "--disable-cert-rotation=true")
}

// StartSpeaker runs a node's MetalLB speaker with its DaemonSet's
// arguments and environment (host network: status.hostIP and
// status.podIP are the node's address).
func (m *metallb) StartSpeaker(l *lab.Lab, node string) error {
	h, err := l.Host(node)
	if err != nil {
		return err
	}
	ip := h.Addr(lab.SegmentLAN, 4).String()
	return l.StartProcess(m.SpeakerKey(node), node,
		[]string{"KUBECONFIG=" + l.InternalKubeconfig(), "METALLB_NAMESPACE=" + metallbNamespace,
			"METALLB_NODE_NAME=" + node, "METALLB_POD_NAME=speaker-" + node,
			"METALLB_HOST=" + ip, "METALLB_ML_BIND_ADDR=" + ip,
			"METALLB_ML_LABELS=" + metallbMLLabels, "METALLB_ML_SECRET_KEY_PATH=" + m.secretDir(l)},
		filepath.Join(m.dir, "speaker"), "--port="+metallbPort, "--log-level=info")
}

// WaitController waits until the controller answers on its metrics port,
// what its readiness probe asks.
func (m *metallb) WaitController(ctx context.Context, l *lab.Lab) error {
	return waitHTTP(ctx, l, "cp", m.ControllerKey(), "http://127.0.0.1:"+metallbPort+"/metrics")
}

// WaitSpeaker: see WaitController.
func (m *metallb) WaitSpeaker(ctx context.Context, l *lab.Lab, node string) error {
	h, err := l.Host(node)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, l, node, m.SpeakerKey(node), "http://"+h.Addr(lab.SegmentLAN, 4).String()+":"+metallbPort+"/metrics")
}

// waitHTTP polls url from host until it answers 200, for up to a minute,
// and fails early when the process key has exited.
func waitHTTP(ctx context.Context, l *lab.Lab, host, key, url string) error {
	hc := l.HTTPClient(host, time.Second)
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if err := l.ProcessExited(key); err != nil {
			return err
		}
		resp, err := hc.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s at %s: %w (last error: %v)", key, url, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
