package layer2_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

// TestAddressConflict: a Service asks for addresses the client already
// uses on the LAN. The controller assigns them, but the elected speaker's
// probe finds them in use: it does not announce them, the Service gets an
// AddressConflict Event, and the client keeps its addresses (other hosts
// still resolve them to the client). Once the client gives them up, a
// re-probe finds them free and the Service becomes reachable.
func TestAddressConflict(t *testing.T) {
	l := startLab(t)
	ctx := context.Background()
	v4, v6 := "198.51.100.230", "2001:db8:100::230"
	t.Cleanup(func() {
		if t.Failed() {
			logLines(t, l, v4, v6)
		}
	})
	client := l.ClientHost()
	clientIf, clientMAC := client.Interface(lab.SegmentLAN), client.MAC(lab.SegmentLAN)
	for _, args := range [][]string{
		{"addr", "add", v4 + "/24", "dev", clientIf},
		{"addr", "add", v6 + "/64", "dev", clientIf, "nodad"},
	} {
		if _, err := ipIn(client.Netns, args...); err != nil {
			t.Fatal(err)
		}
	}
	// Another host on the LAN talks to the client's new addresses.
	for _, ip := range []string{v4, v6} {
		if out, err := l.Exec(ctx, "cp", "bash", "-c", fmt.Sprintf("echo x > /dev/udp/%s/9", ip)); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}

	l.RunPod(t, "conflict-0", "conflict", "node1")
	dual := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "conflict", Namespace: "default",
			Annotations: map[string]string{config.AnnotationLoadBalancerIPs: v4 + "," + v6}},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			IPFamilyPolicy: &dual,
			IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			Selector:       map[string]string{"app": "conflict"},
			Ports:          []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if err := l.Client().Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	ips := l.WaitIngress(t, "conflict", 2)
	if ips[0] != v4 || ips[1] != v6 {
		t.Fatalf("Service conflict got %v, want the requested %s and %s", ips, v4, v6)
	}
	l.WaitEndpoints(t, "conflict", 1)

	lab.Eventually(t, 30*time.Second, "an AddressConflict Event for each address", func() (bool, string) {
		events := serviceEvents(l, "conflict", l2announcer.ReasonAddressConflict)
		n := 0
		for _, ip := range []string{v4, v6} {
			for _, e := range events {
				if strings.Contains(e.Message, "address "+ip+" ") {
					n++
					break
				}
			}
		}
		return n == 2, fmt.Sprint(eventMessages(events))
	})
	events := serviceEvents(l, "conflict", l2announcer.ReasonAddressConflict)
	for _, e := range events {
		t.Logf("Event %s %s from %s: %s", e.Type, e.Reason, e.Source.Host, e.Message)
		if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, clientMAC) || !strings.Contains(e.Message, "eth0") {
			t.Errorf("Event does not name the client's MAC %s and the interface: %s", clientMAC, e.Message)
		}
	}

	// A few re-probes later: still one Event per address, nobody
	// announces, and the LAN still reaches the client at its addresses.
	time.Sleep(3 * time.Second)
	if n := len(serviceEvents(l, "conflict", l2announcer.ReasonAddressConflict)); n != 2 {
		t.Errorf("%d AddressConflict Events, want 2 (one per address): %v", n, eventMessages(serviceEvents(l, "conflict", l2announcer.ReasonAddressConflict)))
	}
	if node, err := l.L2Announcer("default", "conflict"); node != "" || err != nil {
		t.Errorf("ServiceL2Status names %q (%v), want none while the addresses are in conflict", node, err)
	}
	for _, ip := range []string{v4, v6} {
		macs, err := l.WhoHas("cp", netip.MustParseAddr(ip))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("who has %s, asked from cp: %v", ip, macs)
		if len(macs) != 1 || macs[0] != clientMAC {
			t.Errorf("%s answered by %v, want only the client's %s", ip, macs, clientMAC)
		}
		if mac := neighbourOn(l, "cp", ip); mac != clientMAC {
			t.Errorf("cp's neighbour entry for %s holds %q, want the client's %s", ip, mac, clientMAC)
		}
		// The client still answers at its address: refused, not unreachable.
		conn, err := l.DialContext(ctx, "cp", "tcp", net.JoinHostPort(ip, "9"))
		if err == nil {
			conn.Close()
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("cp cannot reach the client at %s: %v", ip, err)
		}
	}

	// The client gives the addresses up; a re-probe (10 s, then 20 s,
	// then every 30 s) finds them free.
	for _, args := range [][]string{{"addr", "del", v4 + "/24", "dev", clientIf}, {"addr", "del", v6 + "/64", "dev", clientIf}} {
		if _, err := ipIn(client.Netns, args...); err != nil {
			t.Fatal(err)
		}
	}
	freed := time.Now()
	var node string
	lab.Eventually(t, 90*time.Second, "a ServiceL2Status for the freed addresses", func() (bool, string) {
		var err error
		node, err = l.L2Announcer("default", "conflict")
		return node != "" && err == nil, fmt.Sprintf("node %q, %v", node, err)
	})
	t.Logf("%s announces the Service %v after the client dropped the addresses", node, time.Since(freed).Round(100*time.Millisecond))
	for _, ip := range ips {
		seen := waitServed(t, l, ip, node, 5)
		t.Logf("%s: %v", lab.URL(ip), seen)
		if seen["conflict-0"] == 0 {
			t.Errorf("%s: the backend never answered: %v", ip, seen)
		}
	}
	if len(serviceEvents(l, "conflict", l2announcer.ReasonAnnounced)) == 0 {
		t.Error("no nodeAssigned Event once the conflict ended")
	}
}

// logLines logs the lines of the lab's speaker logs that mention one of
// the words.
func logLines(t *testing.T, l *lab.Lab, words ...string) {
	files, _ := filepath.Glob(filepath.Join(l.StateDir(), "logs", "*speaker*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			for _, w := range words {
				if strings.Contains(line, w) {
					t.Logf("%s: %s", filepath.Base(f), line)
					break
				}
			}
		}
	}
}

// serviceEvents lists the Events of a Service in default with a reason.
func serviceEvents(l *lab.Lab, name, reason string) []corev1.Event {
	var list corev1.EventList
	if err := l.Client().List(context.Background(), &list, client.InNamespace("default")); err != nil {
		return nil
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "Service" && e.InvolvedObject.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func eventMessages(events []corev1.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, fmt.Sprintf("%s (x%d)", e.Message, e.Count))
	}
	return out
}

// neighbourOn returns the MAC of a host's neighbour entry for ip.
func neighbourOn(l *lab.Lab, host, ip string) string {
	h, err := l.Host(host)
	if err != nil {
		return ""
	}
	out, err := ipIn(h.Netns, "neigh", "show", ip)
	if err != nil {
		return ""
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}
