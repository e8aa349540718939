package scheme

import (
	"fmt"
	"reflect"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// New returns a scheme with client-go's built-in types and barelb's.
func New() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding built-in types to the scheme: %w", err)
	}
	if err := barelbv1beta1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding barelb types to the scheme: %w", err)
	}
	return s, nil
}

// NewSpeaker returns a scheme with barelb.io/v1beta1 and the only built-in
// groups a speaker reads, core/v1, discovery/v1 and coordination/v1 (the
// speakers' Leases): every group's registrations cost a speaker about
// 2 MiB of heap on every node.
func NewSpeaker() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, discoveryv1.AddToScheme, coordinationv1.AddToScheme, barelbv1beta1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("building the speaker's scheme: %w", err)
		}
	}
	return s, nil
}

// clusterScoped are the kinds of the built-in groups barelb reads that
// are not namespaced.
var clusterScoped = map[string]bool{"Node": true, "Namespace": true, "PersistentVolume": true, "ComponentStatus": true}

// StaticRESTMapper maps every object kind of s to its resource and scope
// without asking the API server's discovery: a speaker must start, and
// keep answering for addresses, while the API server is unreachable, and
// controller-runtime asks the mapper as the manager is built. Resources
// are the kinds' regular plurals; barelb's kinds are all namespaced.
func StaticRESTMapper(s *runtime.Scheme) meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for gvk, typ := range s.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal {
			continue
		}
		item, obj := gvk.Kind, reflect.New(typ).Interface()
		if _, isList := obj.(metav1.ListInterface); isList {
			// controller-runtime asks a list's scope under the list's
			// own kind: the item's.
			item = strings.TrimSuffix(gvk.Kind, "List")
		} else if _, ok := obj.(metav1.Object); !ok {
			continue // options and event types every group registers
		}
		scope := meta.RESTScopeNamespace
		if clusterScoped[item] {
			scope = meta.RESTScopeRoot
		}
		m.Add(gvk, scope)
	}
	return m
}
