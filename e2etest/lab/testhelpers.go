package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/testutil"
)

// Eventually is testutil.Eventually (the one polling helper of every
// test): it polls cond every 50 ms until it holds, and fails the test when
// timeout passes first, with cond's last word on what it saw.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	testutil.Eventually(tb, timeout, what, cond)
}

// WaitSteady waits (up to timeout) until request loops, as start starts
// them, all run for a while without a failed request. What a test then
// measures starts from a settled data path: a pod just started, its
// kube-proxy rules and the nodes' neighbour entries toward it can lose
// the first requests (IPv6 most: a lab pod's first second), which says
// nothing of what the test is about.
func WaitSteady(tb testing.TB, timeout time.Duration, start func() []*Prober) {
	tb.Helper()
	const clean = 2 * time.Second
	Eventually(tb, timeout, fmt.Sprintf("request loops running %v without a failure", clean), func() (bool, string) {
		probers := start()
		time.Sleep(clean)
		var failed []string
		for _, p := range probers {
			if r := p.Stop(); r.Failed > 0 {
				failed = append(failed, fmt.Sprintf("%s: %v", p.url, r))
			}
		}
		return len(failed) == 0, fmt.Sprint(failed)
	})
}

// WaitEndpoints waits until the EndpointSlices of the Service svc (in
// namespace default) list n ready endpoints per family.
func (l *Lab) WaitEndpoints(tb testing.TB, svc string, n int) {
	tb.Helper()
	Eventually(tb, 30*time.Second, "ready endpoints of "+svc, func() (bool, string) {
		var slices discoveryv1.EndpointSliceList
		if err := l.Client().List(context.Background(), &slices, client.InNamespace("default"),
			client.MatchingLabels{discoveryv1.LabelServiceName: svc}); err != nil {
			return false, err.Error()
		}
		perFamily := map[discoveryv1.AddressType]int{}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					perFamily[s.AddressType]++
				}
			}
		}
		return perFamily[discoveryv1.AddressTypeIPv4] == n && perFamily[discoveryv1.AddressTypeIPv6] == n, fmt.Sprint(perFamily)
	})
}

// DeletePod deletes a pod of namespace default and waits until it is gone.
func (l *Lab) DeletePod(tb testing.TB, name string) {
	tb.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if err := l.Client().Delete(ctx, pod); err != nil {
		tb.Fatal(err)
	}
	Eventually(tb, 30*time.Second, "pod "+name+" gone", func() (bool, string) {
		err := l.Client().Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// RunPod starts a lab pod (lab/podserver: it answers HTTP on 8080 with its
// name) labelled app=APP on a node, in namespace default.
func (l *Lab) RunPod(tb testing.TB, name, app, node string) {
	tb.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Labels: map[string]string{"app": app, RunLabel: "true"}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{corev1.LabelHostname: node},
			Containers: []corev1.Container{{Name: "web", Image: "lab/podserver",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}
	if err := l.Client().Create(context.Background(), pod); err != nil {
		tb.Fatal(err)
	}
}

// CutFromLAN takes node's LAN link down (SetLANLink) and returns restore,
// which brings it back; restore is also a cleanup of tb, and does
// nothing when called again.
func (l *Lab) CutFromLAN(tb testing.TB, node string) (restore func()) {
	tb.Helper()
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := l.SetLANLink(node, true); err != nil {
				tb.Error(err)
			}
		})
	}
	tb.Cleanup(restore)
	if err := l.SetLANLink(node, false); err != nil {
		tb.Fatal(err)
	}
	return restore
}

// RestartSpeaker restarts a node's speaker and waits (up to a minute) until
// it is ready again.
func (l *Lab) RestartSpeaker(tb testing.TB, node string) {
	tb.Helper()
	if err := l.Restart(node, ComponentSpeaker); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx, node, ComponentSpeaker); err != nil {
		tb.Fatal(err)
	}
}

// L2Announcer returns the node the ServiceL2Status of Service
// namespace/name names ("" when there is none; an error when there are
// several).
func (l *Lab) L2Announcer(namespace, name string) (string, error) {
	var list barelbv1beta1.ServiceL2StatusList
	if err := l.Client().List(context.Background(), &list, client.InNamespace(BarelbNamespace),
		client.MatchingLabels{barelbv1beta1.LabelServiceName: name, barelbv1beta1.LabelServiceNamespace: namespace}); err != nil {
		return "", err
	}
	switch len(list.Items) {
	case 0:
		return "", nil
	case 1:
		return list.Items[0].Status.Node, nil
	}
	var nodes []string
	for _, s := range list.Items {
		nodes = append(nodes, s.Status.Node)
	}
	return "", fmt.Errorf("%d ServiceL2Statuses for %s/%s: %v", len(list.Items), namespace, name, nodes)
}

// WaitSpeakerMetric waits up to a minute until a node's speaker exposes
// series with a value ok accepts (what says which, for the failure
// message), and returns it.
func (l *Lab) WaitSpeakerMetric(tb testing.TB, node, series string, ok func(float64) bool, what string) float64 {
	tb.Helper()
	var v float64
	Eventually(tb, 60*time.Second, fmt.Sprintf("%s on %s to be %s", series, node, what), func() (bool, string) {
		m, err := l.SpeakerMetrics(node)
		if err != nil {
			return false, err.Error()
		}
		var found bool
		v, found = m[series]
		return found && ok(v), fmt.Sprintf("%v (present %v)", v, found)
	})
	return v
}

// SpeakerLog is what a node's speaker has logged so far.
func (l *Lab) SpeakerLog(tb testing.TB, node string) string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(l.StateDir(), "logs", node+"_speaker.log"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(data)
}
