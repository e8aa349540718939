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
// sharing key, and no port+protocol is in both (the dataplane could not tell
// their traffic apart). Their traffic policies and backends may differ: an
// address shared by Services with externalTrafficPolicy Local is announced
// (layer 2) and advertised (BGP) only from nodes holding a ready endpoint of
// every one of them (election.PlanL2, bgpplan.PlanRoutes), and the Services
// are told when no node does. (MetalLB, and barelb before, required the same
// pod selector for Local traffic, which left Services with different
// backends unable to share one address.) Services of different namespaces
// share only when each allows the other's namespace, so that knowing a
// sharing key is not enough to pin another team's address.
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
	return "", true
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
