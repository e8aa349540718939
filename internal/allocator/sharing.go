package allocator

import "fmt"

// canShare reports whether svc may hold an address that holder holds, and if
// not, why. The rule is symmetric; only the wording takes holder's side.
//
// Services share an address only when their owner asked for it with the same
// sharing key, no port+protocol is in both (the dataplane could not tell their
// traffic apart), and traffic to the address reaches the right pods from any
// node announcing it: either both use externalTrafficPolicy Cluster, or both
// select the same pods, so the nodes announcing for Local traffic agree.
func canShare(svc, holder Service) (reason string, ok bool) {
	switch {
	case holder.SharingKey == "":
		return "held without a sharing key", false
	case svc.SharingKey == "":
		return fmt.Sprintf("the requesting service has no sharing key, the holder has %q", holder.SharingKey), false
	case svc.SharingKey != holder.SharingKey:
		return fmt.Sprintf("sharing key %q differs from the holder's %q", svc.SharingKey, holder.SharingKey), false
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
	if svc.Selector != "" && svc.Selector == holder.Selector {
		return "", true
	}
	if svc.Selector == "" || holder.Selector == "" {
		return "they do not both use externalTrafficPolicy Cluster and a pod selector is unknown", false
	}
	return "they select different pods", false
}
