package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func lbService(mutate func(*corev1.Service)) *corev1.Service {
	single := corev1.IPFamilyPolicySingleStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy: &single,
			Selector:       map[string]string{"app": "web", "tier": "front"},
			Ports:          []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}, {Port: 53}},
		},
	}
	if mutate != nil {
		mutate(svc)
	}
	return svc
}

func policy(p corev1.IPFamilyPolicy) *corev1.IPFamilyPolicy { return &p }

func TestParseServiceRequest(t *testing.T) {
	v4, v6 := corev1.IPv4Protocol, corev1.IPv6Protocol
	tests := []struct {
		name    string
		svc     *corev1.Service
		want    ServiceRequest
		wantErr string
	}{{
		name: "defaults",
		svc:  lbService(nil),
		want: ServiceRequest{Families: []corev1.IPFamily{v4}, RequireAll: true, ClusterTraffic: true,
			Selector: "app=web,tier=front", Ports: []Port{{80, corev1.ProtocolTCP}, {53, corev1.ProtocolTCP}}},
	}, {
		name: "barelb annotations",
		svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationAddressPool: "lan", AnnotationAllowSharedIP: "k", AnnotationLoadBalancerIPs: "198.51.100.7"}
		}),
		want: ServiceRequest{Families: []corev1.IPFamily{v4}, RequireAll: true, ClusterTraffic: true, Pool: "lan", SharingKey: "k",
			Addresses: map[corev1.IPFamily]netip.Addr{v4: netip.MustParseAddr("198.51.100.7")}},
	}, {
		name: "MetalLB aliases",
		svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{"metallb.universe.tf/address-pool": "lan", "metallb.io/allow-shared-ip": "k", "metallb.universe.tf/loadBalancerIPs": "198.51.100.7"}
		}),
		want: ServiceRequest{Families: []corev1.IPFamily{v4}, RequireAll: true, ClusterTraffic: true, Pool: "lan", SharingKey: "k",
			Addresses: map[corev1.IPFamily]netip.Addr{v4: netip.MustParseAddr("198.51.100.7")}},
	}, {
		name: "same value under two names is fine",
		svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationAddressPool: "lan", "metallb.io/address-pool": "lan"}
		}),
		want: ServiceRequest{Families: []corev1.IPFamily{v4}, RequireAll: true, ClusterTraffic: true, Pool: "lan"},
	}, {
		name: "disagreeing aliases",
		svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationAddressPool: "a", "metallb.io/address-pool": "b"}
		}),
		wantErr: "disagree",
	}, {
		name: "deprecated spec.loadBalancerIP",
		svc:  lbService(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.9" }),
		want: ServiceRequest{Families: []corev1.IPFamily{v4}, RequireAll: true, ClusterTraffic: true,
			Addresses: map[corev1.IPFamily]netip.Addr{v4: netip.MustParseAddr("198.51.100.9")}},
	}, {
		name: "both loadBalancerIP and annotation",
		svc: lbService(func(s *corev1.Service) {
			s.Spec.LoadBalancerIP = "198.51.100.9"
			s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "198.51.100.7"}
		}),
		wantErr: "both spec.loadBalancerIP",
	}, {
		name:    "not an address",
		svc:     lbService(func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "web.example"} }),
		wantErr: `"web.example" is not an IP address`,
	}, {
		name: "two of a family",
		svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "198.51.100.7,198.51.100.8"}
		}),
		wantErr: "name two IPv4 addresses (198.51.100.7 and 198.51.100.8): barelb gives a Service one address per IP family",
	}, {
		name:    "family the Service does not have",
		svc:     lbService(func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "2001:db8::7"} }),
		wantErr: "is IPv6, but the Service's ipFamilies are [IPv4]",
	}, {
		name: "prefer dual stack",
		svc: lbService(func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{v6, v4}
			s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyPreferDualStack)
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}),
		want: ServiceRequest{Families: []corev1.IPFamily{v6, v4}, Selector: "app=web,tier=front"},
	}, {
		name: "require dual stack with both addresses",
		svc: lbService(func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{v4, v6}
			s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyRequireDualStack)
			s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "2001:db8::7, 198.51.100.7"}
		}),
		want: ServiceRequest{Families: []corev1.IPFamily{v4, v6}, RequireAll: true, ClusterTraffic: true,
			Addresses: map[corev1.IPFamily]netip.Addr{v4: netip.MustParseAddr("198.51.100.7"), v6: netip.MustParseAddr("2001:db8::7")}},
	}, {
		name: "requested address narrows a dual-stack Service to its family",
		svc: lbService(func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{v4, v6}
			s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyPreferDualStack)
			s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "2001:db8::7"}
		}),
		want: ServiceRequest{Families: []corev1.IPFamily{v6}, RequireAll: true, ClusterTraffic: true,
			Addresses: map[corev1.IPFamily]netip.Addr{v6: netip.MustParseAddr("2001:db8::7")}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseServiceRequest(tc.svc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			// Only the fields a case names are compared, besides these.
			if tc.want.Selector == "" {
				got.Selector = ""
			}
			if tc.want.Ports == nil {
				got.Ports = nil
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("ParseServiceRequest (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSharingCrossNamespace(t *testing.T) {
	tests := []struct {
		value   string
		want    []string
		wantErr string
	}{
		{value: "", want: nil},
		{value: "*", want: []string{"*"}},
		{value: " * ", want: []string{"*"}},
		{value: "team-b", want: []string{"team-b"}},
		{value: "team-b, team-c,team-b", want: []string{"team-b", "team-c"}},
		// Nothing looser than a list of names or "*" alone.
		{value: "team-*", wantErr: `"team-*" is not a namespace name`},
		{value: "*,team-b", wantErr: `"*" is not a namespace name`},
		{value: "team-b,", wantErr: `"" is not a namespace name`},
		{value: "Team-B", wantErr: `"Team-B" is not a namespace name`},
		{value: "all", want: []string{"all"}},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			svc := lbService(func(s *corev1.Service) {
				s.Annotations = map[string]string{AnnotationAllowSharedIP: "k", AnnotationSharingCrossNamespace: tt.value}
			})
			got, err := ParseServiceRequest(svc)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if tt.wantErr != "" {
				if !strings.Contains(gotErr, tt.wantErr) {
					t.Fatalf("error %q, want one containing %q", gotErr, tt.wantErr)
				}
				return
			}
			if gotErr != "" {
				t.Fatalf("unexpected error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got.SharingNamespaces); diff != "" {
				t.Errorf("SharingNamespaces (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseServiceRequestKeepsTheSpecOnError(t *testing.T) {
	svc := lbService(func(s *corev1.Service) {
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyRequireDualStack)
		s.Annotations = map[string]string{AnnotationAddressPool: "a", "metallb.io/address-pool": "b"}
	})
	got, err := ParseServiceRequest(svc)
	if err == nil {
		t.Fatal("no error for disagreeing annotations")
	}
	want := ServiceRequest{Families: []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}, RequireAll: true, ClusterTraffic: true,
		Selector: "app=web,tier=front", Ports: []Port{{80, corev1.ProtocolTCP}, {53, corev1.ProtocolTCP}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

func TestServesService(t *testing.T) {
	class := "other"
	tests := []struct {
		name    string
		svc     *corev1.Service
		lbClass string
		want    bool
	}{
		{"default class serves unclassed", lbService(nil), "", true},
		{"default class skips classed", lbService(func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }), "", false},
		{"named class serves its own", lbService(func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }), "other", true},
		{"named class skips unclassed", lbService(nil), "other", false},
		{"not a load balancer", lbService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), "", false},
	}
	for _, tc := range tests {
		if got := ServesService(tc.svc, tc.lbClass); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzParseServiceRequest feeds arbitrary annotation values: no panic, and
// an accepted request names at most one address per family, each within
// the Service's families.
func FuzzParseServiceRequest(f *testing.F) {
	for _, seed := range []string{"198.51.100.7", "198.51.100.7,2001:db8::7", " , ", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4,,", ""} {
		f.Add(seed, "lan", "key")
	}
	f.Fuzz(func(t *testing.T, ips, pool, share string) {
		svc := lbService(func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
			s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyPreferDualStack)
			s.Annotations = map[string]string{"metallb.io/loadBalancerIPs": ips, AnnotationAddressPool: pool, AnnotationAllowSharedIP: share}
		})
		req, err := ParseServiceRequest(svc)
		if err != nil {
			return
		}
		for family, ip := range req.Addresses {
			if FamilyOf(ip) != family || !hasFamily(req.Families, family) || ip.Zone() != "" {
				t.Fatalf("bad address %v for family %v in %+v", ip, family, req)
			}
		}
	})
}
