package scheme

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestStaticRESTMapper: every kind the speaker reads, and its list, maps
// to its resource and scope without an API server.
func TestStaticRESTMapper(t *testing.T) {
	s, err := NewSpeaker()
	if err != nil {
		t.Fatal(err)
	}
	m := StaticRESTMapper(s)
	for _, tc := range []struct {
		group, version, kind, resource string
		scope                          meta.RESTScopeName
	}{
		{"", "v1", "Node", "nodes", meta.RESTScopeNameRoot},
		{"", "v1", "NodeList", "", meta.RESTScopeNameRoot},
		{"", "v1", "Service", "services", meta.RESTScopeNameNamespace},
		{"", "v1", "Secret", "secrets", meta.RESTScopeNameNamespace},
		{"discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", meta.RESTScopeNameNamespace},
		{"coordination.k8s.io", "v1", "Lease", "leases", meta.RESTScopeNameNamespace},
		{"barelb.io", "v1beta1", "IPAddressPool", "ipaddresspools", meta.RESTScopeNameNamespace},
		{"barelb.io", "v1beta1", "IPAddressPoolList", "", meta.RESTScopeNameNamespace},
		{"barelb.io", "v1beta1", "ServiceL2Status", "servicel2statuses", meta.RESTScopeNameNamespace},
		{"barelb.io", "v1beta1", "Community", "communities", meta.RESTScopeNameNamespace},
		{"barelb.io", "v1beta1", "BFDProfile", "bfdprofiles", meta.RESTScopeNameNamespace},
	} {
		mapping, err := m.RESTMapping(schema.GroupKind{Group: tc.group, Kind: tc.kind}, tc.version)
		if err != nil {
			t.Errorf("%s: %v", tc.kind, err)
			continue
		}
		if tc.resource != "" && mapping.Resource.Resource != tc.resource {
			t.Errorf("%s: resource %q, want %q", tc.kind, mapping.Resource.Resource, tc.resource)
		}
		if mapping.Scope.Name() != tc.scope {
			t.Errorf("%s: scope %q, want %q", tc.kind, mapping.Scope.Name(), tc.scope)
		}
	}
}
