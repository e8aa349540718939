package allocator

import (
	"fmt"
	"slices"
	"strings"
)

// canShare reports whether svc may hold an address that holder holds, and if
// not, why. The rule is symmetric; only the wording takes holder's side.
//
// Services share an address only when their owner asked for it with the same
// sharing key, no port+protocol is in both (the dataplane could not tell their
// traffic apart), and traffic to the address reaches the right pods from any
// node announcing it: either both use externalTrafficPolicy Cluster, or both
// select the same pods, so the nodes announcing for Local traffic agree.
// Services of different namespaces share only when each allows the
// other's namespace, so that knowing a sharing key is not enough to pin
// another team's address.
func canShare(svc, holder Service) (reason string, ok bool) {
	ns, holderNS := namespaceOf(svc.Key), namespaceOf(holder.Key)
	switch {
	case holder.SharingKey == "":
		return "held without a sharing key", false
	case svc.SharingKey == "":
		return fmt.Sprintf("the requesting service has no sharing key, the holder has %q", holder.SharingKey), false
	case svc.SharingKey != holder.SharingKey:
		return fmt.Sprintf("sharing key %q differs from the holder's %q", svc.SharingKey, holder.SharingKey), false
	case ns != holderNS && !allowsNamespace(holder, ns):
		return fmt.Sprintf("the holder is in namespace %s and does not allow sharing with namespace %s", holderNS, ns), false
	case ns != holderNS && !allowsNamespace(svc, holderNS):
		return fmt.Sprintf("the holder is in namespace %s, which the requesting service does not allow sharing with", holderNS), false
	}
	for _, p := range svc.Ports {
		for _, q := range holder.Ports {
			if p == q {
				return fmt.Sprintf("port %d/%s is in both", p.Port, p.Protocol), false
			}
		}
	}
	if svc.ClusterTraffic && holder.ClusterTraffic {
		return "", true
	}
	if svc.Selector == "" || holder.Selector == "" {
		return "they do not both use externalTrafficPolicy Cluster and a pod selector is unknown", false
	}
	if ns != holderNS {
		// The same selector in two namespaces selects different pods.
		return "they do not both use externalTrafficPolicy Cluster and select pods of different namespaces", false
	}
	if svc.Selector == holder.Selector {
		return "", true
	}
	return "they select different pods", false
}

// namespaceOf reads the namespace out of a "namespace/name" key; a key
// without one is in the namespace "".
func namespaceOf(key string) string {
	ns, _, found := strings.Cut(key, "/")
	if !found {
		return ""
	}
	return ns
}

// allowsNamespace tells whether svc lets Services of namespace ns share
// its address.
func allowsNamespace(svc Service, ns string) bool {
	return slices.Contains(svc.SharingNamespaces, "*") || slices.Contains(svc.SharingNamespaces, ns)
}
