package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// Where barelb runs in the lab.
const (
	// BarelbNamespace is the namespace barelb runs in and reads its
	// configuration from; Up always creates it.
	BarelbNamespace = "barelb-system"
	// WebhookCertNamespace holds the webhook's certificate Secret, out of
	// the speakers' reach, as in the install manifests; Up creates it.
	WebhookCertNamespace = "barelb-webhook"
	// The controller's and speakers' ports, on the loopback of their
	// namespace (kube-proxy has 10249 and 10256 there).
	controllerMetricsAddr = "127.0.0.1:7472"
	controllerProbeAddr   = "127.0.0.1:7474"
	speakerMetricsAddr    = "127.0.0.1:7473"
	speakerProbeAddr      = "127.0.0.1:7475"
	// memberlistKeyEnv is the speaker's default --memberlist-key-env.
	memberlistKeyEnv = "BARELB_MEMBERLIST_KEY"
	// memberlistExtraKeysEnv is its default --memberlist-extra-keys-env.
	memberlistExtraKeysEnv = "BARELB_MEMBERLIST_EXTRA_KEYS"
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL: a
	// speaker leaves memberlist (up to 1 s) and keeps answering for its
	// hand-over (2 s) before it exits.
	stopGrace = 15 * time.Second
)

// SpeakerBGPGracefulShutdown is the lab speakers' --bgp-graceful-shutdown
// (Options.SpeakerArgs may set another): how long a stopping speaker
// advertises its routes with the GRACEFUL_SHUTDOWN community before it
// closes its sessions. Shorter than the product's default, so that the
// suites stop speakers quickly; the lab's router moves its traffic within
// a fraction of it.
const SpeakerBGPGracefulShutdown = 3 * time.Second

// Components of barelb, for Kill, Stop and Restart.
const (
	ComponentSpeaker    = "speaker"
	ComponentController = "controller"
	ComponentKubeProxy  = "kube-proxy"
)

// barelbBinaries are the programs Options.Barelb runs, from Options.BinDir.
var barelbBinaries = []string{"controller", "speaker"}

func (l *Lab) checkBarelbBinaries() error {
	for _, b := range barelbBinaries {
		if _, err := os.Stat(filepath.Join(l.opts.BinDir, b)); err != nil {
			return fmt.Errorf("%s is missing from %s (run `make build`): %w", b, l.opts.BinDir, err)
		}
	}
	return nil
}

// newMemberlistKey makes the speakers' shared memberlist secret.
func newMemberlistKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making the memberlist secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// createBarelbNamespace creates barelb-system and barelb-webhook.
func (l *Lab) createBarelbNamespace(ctx context.Context) error {
	for _, name := range []string{BarelbNamespace, WebhookCertNamespace} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if _, err := l.clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	return nil
}

// applyRBAC creates the objects of every manifest in Options.RBACDir.
func (l *Lab) applyRBAC(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(l.opts.RBACDir, "*.yaml"))
	if err != nil {
		return fmt.Errorf("listing %s: %w", l.opts.RBACDir, err)
	}
	n := 0
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("reading RBAC: %w", err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("decoding %s: %w", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if err := l.client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating %s %s from %s: %w", obj.GetKind(), obj.GetName(), file, err)
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("no RBAC objects in %s", l.opts.RBACDir)
	}
	return nil
}

// startBarelb starts the controller in the control plane and a speaker on
// every node, and waits until all of them are ready.
func (l *Lab) startBarelb(ctx context.Context) error {
	if err := l.startController(); err != nil {
		return err
	}
	for _, n := range l.state.Nodes {
		if err := l.startSpeaker(n); err != nil {
			return err
		}
	}
	if err := l.waitReady(ctx, l.state.ControlPlane.Netns, ComponentController, controllerProbeAddr); err != nil {
		return err
	}
	for _, n := range l.state.Nodes {
		if err := l.waitReady(ctx, n.Netns, n.Name+"/"+ComponentSpeaker, speakerProbeAddr); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) startController() error {
	_, err := l.startProc(ComponentController, l.state.ControlPlane.Netns, filepath.Join(l.opts.BinDir, "controller"),
		"--kubeconfig="+identityKubeconfig(l.state.StateDir, ComponentController),
		// One replica: no Lease to wait for after a restart.
		"--leader-elect=false",
		"--webhook-cert-namespace="+WebhookCertNamespace,
		"--metrics-bind-address="+controllerMetricsAddr,
		"--health-probe-bind-address="+controllerProbeAddr)
	return err
}

// startSpeaker starts a node's speaker; Restart runs the same command.
func (l *Lab) startSpeaker(n Host) error {
	args := append([]string{
		"--node-name=" + n.Name,
		"--kubeconfig=" + identityKubeconfig(l.state.StateDir, ComponentSpeaker),
		"--metrics-bind-address=" + speakerMetricsAddr,
		"--health-probe-bind-address=" + speakerProbeAddr,
		"--bgp-graceful-shutdown=" + SpeakerBGPGracefulShutdown.String(),
	}, l.opts.SpeakerArgs...)
	l.mu.Lock()
	keys, ok := l.memberlistKeys[n.Name]
	l.mu.Unlock()
	if !ok {
		keys = []string{l.memberlistKey}
	}
	// NODE_IP as the DaemonSet sets it (status.hostIP): the node's
	// first InternalIP.
	env := []string{memberlistKeyEnv + "=" + keys[0], memberlistExtraKeysEnv + "=" + strings.Join(keys[1:], "\n"),
		"NODE_IP=" + n.Addr(SegmentLAN, 4).String()}
	_, err := l.startProcEnv(n.Name+"/"+ComponentSpeaker, n.Netns, env, filepath.Join(l.opts.BinDir, "speaker"), args...)
	return err
}

// SetMemberlistKey gives the speaker of node its own memberlist secret
// from its next (re)start on, as a node whose Secret is out of date has,
// and the secrets it accepts besides (BARELB_MEMBERLIST_EXTRA_KEYS, as
// during a rotation); an empty key gives it the lab's again.
func (l *Lab) SetMemberlistKey(node, key string, extra ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if key == "" {
		delete(l.memberlistKeys, node)
		return
	}
	if l.memberlistKeys == nil {
		l.memberlistKeys = map[string][]string{}
	}
	l.memberlistKeys[node] = append([]string{key}, extra...)
}

// waitReady polls a program's /readyz on the loopback of its namespace.
func (l *Lab) waitReady(ctx context.Context, ns, key, addr string) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, ns, network, addr)
		},
	}}
	defer hc.CloseIdleConnections()
	return waitFor(ctx, 60*time.Second, key+" /readyz", func() (bool, error) {
		l.mu.Lock()
		p := l.procs[key]
		l.mu.Unlock()
		if p == nil {
			return false, fmt.Errorf("%s is not running", key)
		}
		if err := p.errExited(); err != nil {
			return false, fmt.Errorf("%w (see %s)", err, l.logPath(logKey(key)))
		}
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// WaitReady waits until a node's speaker (or, with host "cp", the
// controller) answers /readyz, e.g. after Restart.
func (l *Lab) WaitReady(ctx context.Context, host, component string) error {
	key, err := l.procKey(host, component)
	if err != nil {
		return err
	}
	switch component {
	case ComponentSpeaker:
		n, _ := l.node(host)
		return l.waitReady(ctx, n.Netns, key, speakerProbeAddr)
	case ComponentController:
		return l.waitReady(ctx, l.state.ControlPlane.Netns, key, controllerProbeAddr)
	}
	return fmt.Errorf("%s has no readiness probe", component)
}

// procKey names the process of a component: NODE/speaker, NODE/kube-proxy
// or (host "cp") controller.
func (l *Lab) procKey(host, component string) (string, error) {
	if host == "cp" || host == l.state.ControlPlane.Netns {
		if component == ComponentController {
			return ComponentController, nil
		}
		return "", fmt.Errorf("unknown component %q of the control plane (controller)", component)
	}
	if _, err := l.node(host); err != nil {
		return "", err
	}
	switch component {
	case ComponentSpeaker, ComponentKubeProxy:
		return host + "/" + component, nil
	}
	return "", fmt.Errorf("unknown component %q (speaker or kube-proxy)", component)
}

// Stop stops a node's "speaker" or "kube-proxy" (or, with host "cp", the
// "controller") gracefully: SIGTERM, then waits for it to exit (SIGKILL
// after 15 s). It returns when the process is gone.
func (l *Lab) Stop(host, component string) error {
	key, err := l.procKey(host, component)
	if err != nil {
		return err
	}
	l.mu.Lock()
	p := l.procs[key]
	l.mu.Unlock()
	if p == nil || p.exited() {
		return fmt.Errorf("%s is not running", key)
	}
	p.stop(stopGrace)
	return nil
}

func logKey(key string) string {
	out := []byte(key)
	for i, c := range out {
		if c == '/' {
			out[i] = '_'
		}
	}
	return string(out)
}
