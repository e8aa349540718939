package announcement

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/servicecondition"
)

// Node is what the verdict needs of a node.
type Node struct {
	Name   string
	Labels labels.Set
	// Ready is the node's Ready condition; layer 2 elects only among
	// Ready nodes.
	Ready bool
	// Excluded nodes never announce: NetworkUnavailable, or labelled
	// node.kubernetes.io/exclude-from-external-load-balancers.
	Excluded bool
	// Speaker is set when a speaker runs on the node (its Lease exists).
	Speaker bool
	// SessionsUp names the BGPPeers whose sessions from this node are
	// established, as the speaker's Lease says; nil when the Lease does
	// not say (a speaker of an older version): the node's
	// ServiceBGPStatus is taken at its word then.
	SessionsUp map[string]bool
}

// L2Report is what the Service's ServiceL2Status says.
type L2Report struct {
	Node       string
	Addresses  []string
	Interfaces []string
}

// BGPReport is what one node's ServiceBGPStatus of the Service says.
type BGPReport struct {
	Node  string
	Peers []string
}

// Input is everything the verdict on one Service is made from.
type Input struct {
	// Addresses are those in the Service's status.loadBalancer.
	Addresses []netip.Addr
	// PoolName is the pool barelb.io/ip-allocated-from-pool names; Pool
	// its definition in force, nil when there is none.
	PoolName string
	Pool     *config.Pool
	// Labels are the Service's labels.
	Labels labels.Set
	// Local is externalTrafficPolicy Local; EndpointNodes then names
	// the nodes with a ready endpoint.
	Local         bool
	EndpointNodes map[string]bool
	// SharedLocal are the other Services with externalTrafficPolicy
	// Local that share one of the addresses: the address is announced
	// only from a node with a ready endpoint of each of them too.
	SharedLocal []SharedService

	L2Advertisements  []*config.L2Advertisement
	BGPAdvertisements []*config.BGPAdvertisement
	Peers             []*config.BGPPeer
	Nodes             []Node

	// L2 is the Service's ServiceL2Status, nil when there is none; BGP
	// its ServiceBGPStatus objects, one per advertising node.
	L2  *L2Report
	BGP []BGPReport
}

// SharedService is another Service on the same address.
type SharedService struct {
	// Name is namespace/name.
	Name          string
	EndpointNodes map[string]bool
}

// mayAnnounce reports whether node n holds what Local requires: a ready
// endpoint of the Service, when it is Local, and of each Local Service
// sharing its address.
func (in Input) mayAnnounce(n string) bool {
	if in.Local && !in.EndpointNodes[n] {
		return false
	}
	for _, s := range in.SharedLocal {
		if !s.EndpointNodes[n] {
			return false
		}
	}
	return true
}

// noCommonEndpoint is the reason why no eligible node may announce the
// address, when one may for the Service alone.
func (in Input) noCommonEndpoint(eligible []string) (reason, message string, ok bool) {
	if len(in.SharedLocal) == 0 || (in.Local && !slices.ContainsFunc(eligible, func(n string) bool { return in.EndpointNodes[n] })) {
		return "", "", false
	}
	names := make([]string, len(in.SharedLocal))
	for i, s := range in.SharedLocal {
		names[i] = s.Name
	}
	return barelbv1beta1.AnnouncedReasonNoCommonEndpoint, fmt.Sprintf(
		"the address is shared with %s (externalTrafficPolicy Local) and none of the eligible nodes (%s) has a ready endpoint of every Local Service on it", few(names), few(eligible)), true
}

// mode is the verdict of one mode (layer 2 or BGP).
type mode struct {
	covered   bool
	announced bool
	reason    string
	message   string
}

// Decide is the Service's barelb.io/Announced condition.
func Decide(in Input) servicecondition.Want {
	if len(in.Addresses) == 0 {
		return notAnnounced(barelbv1beta1.AnnouncedReasonNoAddress,
			"the Service has no address to announce (see the "+barelbv1beta1.ConditionAddressAssigned+" condition)")
	}
	addrs := config.AnnouncedAddresses(in.Pool, in.Addresses)
	if len(addrs) == 0 {
		return notAnnounced(barelbv1beta1.AnnouncedReasonNoAddress, fmt.Sprintf(
			"status.loadBalancer holds %s, which is not in the pool barelb assigned from (%q): speakers announce only addresses barelb assigned",
			list(in.Addresses), in.PoolName))
	}
	l2 := decideL2(in, addrs)
	bgp := decideBGP(in)
	if !l2.covered && !bgp.covered {
		return notAnnounced(barelbv1beta1.AnnouncedReasonNoAdvertisement, fmt.Sprintf(
			"no L2Advertisement or BGPAdvertisement covers pool %s and selects this Service", in.PoolName))
	}
	var parts []string
	for _, m := range []struct {
		name string
		mode
	}{{"layer 2", l2}, {"BGP", bgp}} {
		if m.covered {
			parts = append(parts, m.name+": "+m.message)
		}
	}
	message := strings.Join(parts, "; ")
	switch {
	case l2.announced && bgp.announced:
		return announced(barelbv1beta1.AnnouncedReasonLayer2AndBGP, message)
	case l2.announced:
		return announced(barelbv1beta1.AnnouncedReasonLayer2, message)
	case bgp.announced:
		return announced(barelbv1beta1.AnnouncedReasonBGP, message)
	}
	// The first mode with a reason more telling than Pending names it.
	reason := barelbv1beta1.AnnouncedReasonPending
	for _, m := range []mode{l2, bgp} {
		if m.covered && m.reason != barelbv1beta1.AnnouncedReasonPending {
			reason = m.reason
			break
		}
	}
	return notAnnounced(reason, message)
}

func announced(reason, message string) servicecondition.Want {
	return servicecondition.Want{Status: metav1.ConditionTrue, Reason: reason, Message: message}
}

func notAnnounced(reason, message string) servicecondition.Want {
	return servicecondition.Want{Status: metav1.ConditionFalse, Reason: reason, Message: message}
}

// decideL2 is the layer-2 verdict: announced when the Service's
// ServiceL2Status names a node for one of its addresses.
func decideL2(in Input, addrs []netip.Addr) mode {
	var advs []string
	var selecting []*config.L2Advertisement
	for _, a := range in.L2Advertisements {
		if in.Pool != nil && a.CoversPool(in.Pool) && a.SelectsService(in.Labels) {
			selecting = append(selecting, a)
			advs = append(advs, a.Name)
		}
	}
	if len(selecting) == 0 {
		return mode{}
	}
	m := mode{covered: true}
	if r := in.L2; r != nil && r.Node != "" {
		var answered []string
		for _, a := range r.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil && slices.Contains(addrs, ip) {
				answered = append(answered, a)
			}
		}
		if len(answered) > 0 {
			m.announced = true
			m.message = fmt.Sprintf("node %s answers ARP/NDP for %s", r.Node, strings.Join(answered, ", "))
			if len(r.Interfaces) > 0 {
				m.message += " on " + strings.Join(r.Interfaces, ", ")
			}
			return m
		}
	}
	var eligible []string
	for _, n := range in.Nodes {
		if n.Speaker && n.Ready && !n.Excluded && slices.ContainsFunc(selecting, func(a *config.L2Advertisement) bool { return a.SelectsNode(n.Labels) }) {
			eligible = append(eligible, n.Name)
		}
	}
	if len(eligible) == 0 {
		m.reason, m.message = barelbv1beta1.AnnouncedReasonNoEligibleNode, fmt.Sprintf(
			"no Ready node running a speaker is selected by L2Advertisement %s", strings.Join(advs, ", "))
		return m
	}
	if !slices.ContainsFunc(eligible, in.mayAnnounce) {
		if reason, message, ok := in.noCommonEndpoint(eligible); ok {
			m.reason, m.message = reason, message
			return m
		}
		m.reason, m.message = barelbv1beta1.AnnouncedReasonNoReadyEndpoint, fmt.Sprintf(
			"externalTrafficPolicy is Local and none of the eligible nodes (%s) has a ready endpoint", few(eligible))
		return m
	}
	m.reason, m.message = barelbv1beta1.AnnouncedReasonPending, fmt.Sprintf(
		"no speaker reports answering for it yet (eligible nodes: %s)", few(eligible))
	return m
}

// decideBGP is the BGP verdict: announced when a node's ServiceBGPStatus
// names a peer whose session from that node is established.
func decideBGP(in Input) mode {
	var selecting []*config.BGPAdvertisement
	var advs []string
	for _, a := range in.BGPAdvertisements {
		if in.Pool != nil && a.CoversPool(in.Pool) && a.SelectsService(in.Labels) {
			selecting = append(selecting, a)
			advs = append(advs, a.Name)
		}
	}
	if len(selecting) == 0 {
		return mode{}
	}
	m := mode{covered: true}
	nodes := map[string]*Node{}
	for i := range in.Nodes {
		nodes[in.Nodes[i].Name] = &in.Nodes[i]
	}

	// What the speakers report, by established session.
	var down []string // "peer (from node)"
	upPeers, upNodes := map[string]bool{}, map[string]bool{}
	reports := slices.Clone(in.BGP)
	sort.Slice(reports, func(i, j int) bool { return reports[i].Node < reports[j].Node })
	for _, r := range reports {
		n := nodes[r.Node]
		for _, p := range r.Peers {
			if n == nil || n.SessionsUp == nil || n.SessionsUp[p] {
				upPeers[p], upNodes[r.Node] = true, true
			} else {
				down = append(down, p+" (from "+r.Node+")")
			}
		}
	}
	if len(upPeers) > 0 {
		m.announced = true
		m.message = fmt.Sprintf("advertised to %s by node %s", few(sortedKeys(upPeers)), few(sortedKeys(upNodes)))
		return m
	}
	if len(down) > 0 {
		m.reason, m.message = barelbv1beta1.AnnouncedReasonNoBGPSessionUp, fmt.Sprintf(
			"advertised to %s, but no session is established", few(down))
		return m
	}

	// Nothing reported: why not.
	var eligible []*Node
	for i := range in.Nodes {
		n := &in.Nodes[i]
		if n.Speaker && !n.Excluded && slices.ContainsFunc(selecting, func(a *config.BGPAdvertisement) bool { return a.SelectsNode(n.Labels) }) {
			eligible = append(eligible, n)
		}
	}
	if len(eligible) == 0 {
		m.reason, m.message = barelbv1beta1.AnnouncedReasonNoEligibleNode, fmt.Sprintf(
			"no node running a speaker is selected by BGPAdvertisement %s", strings.Join(advs, ", "))
		return m
	}
	if !slices.ContainsFunc(eligible, func(n *Node) bool { return in.mayAnnounce(n.Name) }) {
		names := make([]string, len(eligible))
		for i, n := range eligible {
			names[i] = n.Name
		}
		if reason, message, ok := in.noCommonEndpoint(names); ok {
			m.reason, m.message = reason, message
			return m
		}
		m.reason, m.message = barelbv1beta1.AnnouncedReasonNoReadyEndpoint,
			"externalTrafficPolicy is Local and no node selected by BGPAdvertisement "+strings.Join(advs, ", ")+" has a ready endpoint"
		return m
	}
	eligible = slices.DeleteFunc(eligible, func(n *Node) bool { return !in.mayAnnounce(n.Name) })
	// The sessions the eligible nodes would advertise it over.
	known, anyUp := true, false
	var sessions []string
	for _, n := range eligible {
		for _, p := range in.Peers {
			if !p.SelectsNode(n.Labels) || !slices.ContainsFunc(selecting, func(a *config.BGPAdvertisement) bool { return a.SelectsPeer(p.Name) }) {
				continue
			}
			sessions = append(sessions, p.Name+" (from "+n.Name+")")
			if n.SessionsUp == nil {
				known = false
			} else if n.SessionsUp[p.Name] {
				anyUp = true
			}
		}
	}
	switch {
	case len(sessions) == 0:
		m.reason, m.message = barelbv1beta1.AnnouncedReasonNoBGPPeer, fmt.Sprintf(
			"no BGPPeer that BGPAdvertisement %s goes to selects an eligible node", strings.Join(advs, ", "))
	case known && !anyUp:
		m.reason, m.message = barelbv1beta1.AnnouncedReasonNoBGPSessionUp, fmt.Sprintf(
			"no session is established: %s", few(sessions))
	default:
		m.reason, m.message = barelbv1beta1.AnnouncedReasonPending, fmt.Sprintf(
			"no speaker reports advertising it yet (sessions: %s)", few(sessions))
	}
	return m
}

// few lists up to a handful of names, and how many more there are: a
// condition message stays short with a thousand nodes.
func few(names []string) string {
	const shown = 8
	if len(names) <= shown {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func list(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
