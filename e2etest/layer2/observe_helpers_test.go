package layer2_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/testenv"
)

// scrapeSpeaker reads a node's speaker /metrics: series (name with
// labels, as exposed) → value.
func scrapeSpeaker(tb testing.TB, l *lab.Lab, node string) map[string]float64 {
	tb.Helper()
	m, err := l.SpeakerMetrics(node)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// speakerSeries returns the barelb_speaker_ series of a scrape, sorted, for
// logging.
func speakerSeries(m map[string]float64) string {
	var lines []string
	for k, v := range m {
		if strings.HasPrefix(k, "barelb_speaker_") {
			lines = append(lines, fmt.Sprintf("%s %g", k, v))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// svcSpec is a LoadBalancer Service to create.
type svcSpec struct {
	name, app string
	port      int32
	// ip is the requested address (annotation); sharing the sharing key.
	ip, sharing string
	// ipv4Only makes it single-stack IPv4; dual-stack otherwise.
	ipv4Only bool
	// local is externalTrafficPolicy Local; Cluster otherwise.
	local bool
}

// createService creates a LoadBalancer Service selecting app=APP on port
// → the pods' 8080.
func createService(tb testing.TB, l *lab.Lab, s svcSpec) {
	tb.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: "default", Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": s.app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: s.port, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if s.ipv4Only {
		single := corev1.IPFamilyPolicySingleStack
		svc.Spec.IPFamilyPolicy = &single
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	} else {
		dual := corev1.IPFamilyPolicyPreferDualStack
		svc.Spec.IPFamilyPolicy = &dual
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	if s.local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if s.ip != "" {
		svc.Annotations[config.AnnotationLoadBalancerIPs] = s.ip
	}
	if s.sharing != "" {
		svc.Annotations[config.AnnotationAllowSharedIP] = s.sharing
	}
	if err := l.Client().Create(context.Background(), svc); err != nil {
		tb.Fatal(err)
	}
}

// statusOf returns the ServiceL2Status of a Service (nil when none).
func statusOf(tb testing.TB, l *lab.Lab, svc string) *barelbv1beta1.ServiceL2Status {
	tb.Helper()
	var list barelbv1beta1.ServiceL2StatusList
	if err := l.Client().List(context.Background(), &list, client.InNamespace(lab.BarelbNamespace),
		client.MatchingLabels{"barelb.io/service-name": svc, "barelb.io/service-namespace": "default"}); err != nil {
		tb.Fatal(err)
	}
	if len(list.Items) != 1 {
		return nil
	}
	return &list.Items[0]
}

// interfacesOf lists the interfaces a ServiceL2Status names.
func interfacesOf(s *barelbv1beta1.ServiceL2Status) []string {
	var out []string
	for _, i := range s.Status.Interfaces {
		out = append(out, i.Name)
	}
	return out
}

// editAdvertisement changes the sample's L2Advertisement "lan" with a
// merge patch (no conflict with the speakers, which never write it).
func editAdvertisement(tb testing.TB, l *lab.Lab, edit func(*barelbv1beta1.L2AdvertisementSpec)) {
	tb.Helper()
	ctx := context.Background()
	adv := &barelbv1beta1.L2Advertisement{}
	if err := l.Client().Get(ctx, client.ObjectKey{Namespace: lab.BarelbNamespace, Name: "lan"}, adv); err != nil {
		tb.Fatal(err)
	}
	before := adv.DeepCopy()
	edit(&adv.Spec)
	if err := l.Client().Patch(ctx, adv, client.MergeFrom(before)); err != nil {
		tb.Fatalf("editing L2Advertisement lan: %v", err)
	}
}

// labelNode sets a label of a Node with a merge patch (the lab's
// heartbeats write the Node's status meanwhile).
func labelNode(tb testing.TB, l *lab.Lab, node, key, value string) {
	tb.Helper()
	ctx := context.Background()
	n := &corev1.Node{}
	if err := l.Client().Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
		tb.Fatal(err)
	}
	before := n.DeepCopy()
	n.Labels[key] = value
	if err := l.Client().Patch(ctx, n, client.MergeFrom(before)); err != nil {
		tb.Fatalf("labelling node %s: %v", node, err)
	}
}

// waitEventFor waits for an Event of this type and reason about kind/name
// (Node Events are in "default") and returns its message.
func waitEventFor(tb testing.TB, l *lab.Lab, namespace, kind, name, typ, reason string) string {
	tb.Helper()
	var msg string
	lab.Eventually(tb, 60*time.Second, fmt.Sprintf("a %s Event %s on %s %s", typ, reason, kind, name), func() (bool, string) {
		var events corev1.EventList
		if err := l.Client().List(context.Background(), &events, client.InNamespace(namespace)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Type == typ && e.Reason == reason {
				msg = e.Message
				return true, ""
			}
			seen = append(seen, e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+" "+e.Reason)
		}
		return false, fmt.Sprint(seen)
	})
	return msg
}

// arpAnswerers sends one ARP request for ip from the client and returns
// the MAC addresses that answered within wait, sorted: more than one is
// split brain.
func arpAnswerers(tb testing.TB, l *lab.Lab, ip netip.Addr, wait time.Duration) []string {
	tb.Helper()
	c := l.ClientHost()
	self := c.Addr(lab.SegmentLAN, 4)
	seen := map[string]bool{}
	err := testenv.InNetns(c.Netns, func() error {
		ifi, err := net.InterfaceByName(c.Interface(lab.SegmentLAN))
		if err != nil {
			return err
		}
		ac, err := arp.Dial(ifi)
		if err != nil {
			return fmt.Errorf("opening an ARP socket in the client: %w", err)
		}
		defer ac.Close()
		if err := ac.Request(ip); err != nil {
			return fmt.Errorf("sending an ARP request for %s: %w", ip, err)
		}
		deadline := time.Now().Add(wait)
		if err := ac.SetReadDeadline(deadline); err != nil {
			return err
		}
		for time.Now().Before(deadline) {
			p, _, err := ac.Read()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return nil
				}
				continue
			}
			// Gratuitous replies name the address itself as target.
			if p.Operation == arp.OperationReply && p.SenderIP == ip && p.TargetIP == self {
				seen[p.SenderHardwareAddr.String()] = true
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for mac := range seen {
		out = append(out, mac)
	}
	sort.Strings(out)
	return out
}

// onEveryNode runs a command in every node's namespace.
func onEveryNode(tb testing.TB, l *lab.Lab, cmd ...string) {
	tb.Helper()
	for _, n := range l.Nodes() {
		if out, err := l.Exec(context.Background(), n.Name, cmd...); err != nil {
			tb.Fatalf("%v on %s: %v: %s", cmd, n.Name, err, out)
		}
	}
}

// waitEndpoints4 waits until an IPv4-only Service has n ready endpoints.
func waitEndpoints4(tb testing.TB, l *lab.Lab, svc string, n int) {
	tb.Helper()
	lab.Eventually(tb, 30*time.Second, "ready IPv4 endpoints of "+svc, func() (bool, string) {
		var slices discoveryv1.EndpointSliceList
		if err := l.Client().List(context.Background(), &slices, client.InNamespace("default"),
			client.MatchingLabels{discoveryv1.LabelServiceName: svc}); err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if s.AddressType == discoveryv1.AddressTypeIPv4 && e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		return ready == n, fmt.Sprint(ready)
	})
}
