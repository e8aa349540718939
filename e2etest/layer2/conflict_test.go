package layer2_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/announcer"
	"github.com/barelb/barelb/internal/testenv"
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
	ips := waitIngress(t, l, "conflict", 2)
	if ips[0] != v4 || ips[1] != v6 {
		t.Fatalf("Service conflict got %v, want the requested %s and %s", ips, v4, v6)
	}
	l.WaitEndpoints(t, "conflict", 1)

	lab.Eventually(t, 30*time.Second, "an AddressConflict Event for each address", func() (bool, string) {
		events := serviceEvents(l, "conflict", announcer.ReasonAddressConflict)
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
	events := serviceEvents(l, "conflict", announcer.ReasonAddressConflict)
	for _, e := range events {
		t.Logf("Event %s %s from %s: %s", e.Type, e.Reason, e.Source.Host, e.Message)
		if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, clientMAC) || !strings.Contains(e.Message, "eth0") {
			t.Errorf("Event does not name the client's MAC %s and the interface: %s", clientMAC, e.Message)
		}
	}

	// A few re-probes later: still one Event per address, nobody
	// announces, and the LAN still reaches the client at its addresses.
	time.Sleep(3 * time.Second)
	if n := len(serviceEvents(l, "conflict", announcer.ReasonAddressConflict)); n != 2 {
		t.Errorf("%d AddressConflict Events, want 2 (one per address): %v", n, eventMessages(serviceEvents(l, "conflict", announcer.ReasonAddressConflict)))
	}
	if node, err := announcerOf(l, "conflict"); node != "" || err != nil {
		t.Errorf("ServiceL2Status names %q (%v), want none while the addresses are in conflict", node, err)
	}
	for _, ip := range []string{v4, v6} {
		macs, err := whoHas(l, "cp", netip.MustParseAddr(ip))
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
		node, err = announcerOf(l, "conflict")
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
	if len(serviceEvents(l, "conflict", announcer.ReasonAnnounced)) == 0 {
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

// whoHas asks the LAN from a host which MACs have ip (an ARP request, or
// a Neighbor Solicitation to ip's solicited-node group), as arping and
// ndisc6 would, and returns the MACs that answered within a second,
// sorted.
func whoHas(l *lab.Lab, host string, ip netip.Addr) ([]string, error) {
	h, err := l.Host(host)
	if err != nil {
		return nil, err
	}
	ifname := h.Interface(lab.SegmentLAN)
	src := h.Addr(lab.SegmentLAN, 4)
	proto := unix.ETH_P_ARP
	if ip.Is6() {
		src, proto = h.Addr(lab.SegmentLAN, 6), unix.ETH_P_IPV6
	}
	var conn *packet.Conn
	var ifi *net.Interface
	err = testenv.InNetns(h.Netns, func() error {
		var err error
		if ifi, err = net.InterfaceByName(ifname); err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, proto, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening a packet socket in %s: %w", host, err)
	}
	defer conn.Close()
	var frame []byte
	if ip.Is4() {
		p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, src, ethernet.Broadcast, ip)
		if err != nil {
			return nil, err
		}
		pb, _ := p.MarshalBinary()
		frame, err = (&ethernet.Frame{Destination: ethernet.Broadcast, Source: ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		if err != nil {
			return nil, err
		}
	} else {
		frame, err = solicitationFrame(ifi.HardwareAddr, src, ip)
		if err != nil {
			return nil, err
		}
	}
	if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])}); err != nil {
		return nil, fmt.Errorf("asking for %s: %w", ip, err)
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(time.Second)
	buf := make([]byte, 2048)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		if mac, ok := answerFor(buf[:n], ip, ifi.HardwareAddr); ok {
			seen[mac] = true
		}
	}
	var out []string
	for mac := range seen {
		out = append(out, mac)
	}
	sort.Strings(out)
	return out, nil
}

// solicitationFrame is a Neighbor Solicitation for target from src.
func solicitationFrame(hw net.HardwareAddr, src, target netip.Addr) ([]byte, error) {
	group, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		return nil, err
	}
	ns := &ndp.NeighborSolicitation{TargetAddress: target, Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: hw}}}
	icmp, err := ndp.MarshalMessageChecksum(ns, src, group)
	if err != nil {
		return nil, err
	}
	ip := make([]byte, 40+len(icmp))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6], ip[7] = 58, 255
	s, d := src.As16(), group.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[40:], icmp)
	g := group.As16()
	dst := net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
	return (&ethernet.Frame{Destination: dst, Source: hw, EtherType: ethernet.EtherTypeIPv6, Payload: ip}).MarshalBinary()
}

// answerFor returns the MAC an ARP reply or a Neighbor Advertisement for
// ip, not sent by ours, gives.
func answerFor(frame []byte, ip netip.Addr, ours net.HardwareAddr) (string, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.Source.String() == ours.String() {
		return "", false
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if p.UnmarshalBinary(f.Payload) != nil || p.Operation != arp.OperationReply || p.SenderIP != ip {
			return "", false
		}
		return p.SenderHardwareAddr.String(), true
	case ethernet.EtherTypeIPv6:
		if len(f.Payload) < 40 || f.Payload[6] != 58 {
			return "", false
		}
		msg, err := ndp.ParseMessage(f.Payload[40:])
		if err != nil {
			return "", false
		}
		na, ok := msg.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress.WithZone("") != ip {
			return "", false
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				return lla.Addr.String(), true
			}
		}
		return f.Source.String(), true
	}
	return "", false
}
