package bgpadvertiser

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/bfd"
	"github.com/barelb/barelb/internal/bgp"
	"github.com/barelb/barelb/internal/bgpplan"
	"github.com/barelb/barelb/internal/config"
)

// SecretPasswordKey is the key of a passwordSecret holding the TCP MD5
// password (a Secret of type kubernetes.io/basic-auth).
const SecretPasswordKey = corev1.BasicAuthPasswordKey

// world is what one decision is made from: the objects as read, plain.
type world struct {
	Node    bgpplan.Node
	NodeIPs []netip.Addr // the node's InternalIPs
	// Cordoned is the node's spec.unschedulable (kubectl cordon, and
	// kubectl drain's first step).
	Cordoned bool
	// NodeReady is the node's Ready condition: a kubelet shutting its
	// node down (graceful node shutdown) turns it false before it stops
	// the pods.
	NodeReady bool
	Services  []bgpplan.Service
	Pools     map[string]*config.Pool
	Peers     []*barelbv1beta1.BGPPeer
	Advs      []*barelbv1beta1.BGPAdvertisement
	// Communities are the Community objects (named communities).
	Communities []barelbv1beta1.Community
	Profiles    []*barelbv1beta1.BFDProfile
	// Secrets are the Secrets of barelb's namespace by name (the only
	// namespace a passwordSecret may name).
	Secrets map[string]*corev1.Secret
}

// decision is what the node does and reports.
type decision struct {
	// Peers are the sessions to open (valid peers selecting this node),
	// sorted by name; Routes the prefixes each is sent.
	Peers  []bgp.Peer
	Routes map[string][]bgp.Route
	// BFD are the BFD sessions wanted, by BGPPeer name; Local is left
	// to the glue when the peer sets no sourceAddress (the kernel's
	// choice of source for the peer's address).
	BFD map[string]bfd.Peer
	// Passwords tells which sessions use a TCP MD5 password, and where it
	// comes from ("" for spec.password, the Secret's name otherwise).
	Passwords map[string]string
	// Statuses are the peers each advertised Service (namespace/name) goes
	// to, sorted; Services with the same peers share one list (read-only).
	Statuses map[string][]string
	// PeerProblems are the messages of BGPPeers that cannot be used (or
	// only in part), by name; AdvProblems the same for BGPAdvertisements.
	PeerProblems, AdvProblems map[string]string
	// GracefulShutdown sends every route with the GRACEFUL_SHUTDOWN
	// community (RFC 8326): the node is cordoned, most likely drained for
	// maintenance, and the routers should prefer the other nodes while it
	// still forwards. Its routes stay: a Service only this node serves
	// keeps its only path.
	GracefulShutdown bool
	// HoldOverRestart tells that a speaker restarting in place (its
	// --restart-hold) may leave its routes as they are instead of
	// starting a graceful shutdown: every session sent routes has
	// graceful restart, so the routers keep the routes, stale, while it
	// is away and their ECMP routes do not change (a change re-hashes
	// the flows, and a connection moved to another node is reset), and
	// the node is Ready and not cordoned, so it is not going down.
	HoldOverRestart bool
}

// decide turns the world into the decision.
func decide(w world) decision {
	d := decision{
		Routes: map[string][]bgp.Route{}, BFD: map[string]bfd.Peer{}, Passwords: map[string]string{},
		Statuses: map[string][]string{}, PeerProblems: map[string]string{}, AdvProblems: map[string]string{},
		GracefulShutdown: w.Cordoned,
	}
	addProblem := func(m map[string]string, name, msg string) {
		if m[name] != "" {
			m[name] += "; " + msg
			return
		}
		m[name] = msg
	}

	profiles := map[string]bfd.Profile{}
	badProfiles := map[string]error{}
	profileNames := map[string]bool{}
	for _, p := range w.Profiles {
		profileNames[p.Name] = true
		prof, err := config.BFDProfile(p.Spec)
		if err != nil {
			badProfiles[p.Name] = err
			continue
		}
		profiles[p.Name] = prof
	}

	var nextHopV4, nextHopV6 netip.Addr
	for _, ip := range w.NodeIPs {
		if ip.Is4() && !nextHopV4.IsValid() {
			nextHopV4 = ip
		}
		if ip.Is6() && !nextHopV6.IsValid() {
			nextHopV6 = ip
		}
	}

	var planPeers []*config.BGPPeer
	sessions := map[string]bgp.Peer{}
	for _, obj := range w.Peers {
		p, err := config.BGPPeerFromAPI(obj, config.BGPPeerOptions{BFDProfiles: profileNames})
		if err != nil {
			addProblem(d.PeerProblems, obj.Name, err.Error())
			continue
		}
		if !p.SelectsNode(w.Node.Labels) {
			continue
		}
		sp, source, err := sessionOf(p, w.Secrets, nextHopV4, nextHopV6)
		if err == nil {
			err = sp.Check()
		}
		if err != nil {
			addProblem(d.PeerProblems, obj.Name, err.Error())
			continue
		}
		if p.BFDProfile != "" {
			if perr := badProfiles[p.BFDProfile]; p.Interface != "" {
				// The router's link-local address is learnt on the
				// link, not configured: BFD would need it first.
				addProblem(d.PeerProblems, obj.Name, fmt.Sprintf("bfdProfile %s: BFD over an unnumbered session (interface %s) is not supported; the session runs without BFD", p.BFDProfile, p.Interface))
			} else if perr != nil {
				addProblem(d.PeerProblems, obj.Name, fmt.Sprintf("bfdProfile %s: %v; the session runs without BFD", p.BFDProfile, perr))
			} else {
				// An eBGP multihop peer may be routers away: single-hop
				// BFD (TTL 255 only, RFC 5881) would never come up with
				// it, so it gets a multihop session (RFC 5883).
				d.BFD[p.Name] = bfd.Peer{Local: p.SourceAddress, Remote: p.Address, Multihop: p.EBGPMultiHop, Profile: profiles[p.BFDProfile]}
			}
		}
		if sp.Password != "" {
			d.Passwords[p.Name] = source
		}
		planPeers = append(planPeers, p)
		sessions[p.Name] = sp
	}

	// An ambiguous community name is left out of aliases: an
	// advertisement using it is refused with "unknown community name".
	aliases, _ := config.CommunityAliases(w.Communities)
	var advs []*config.BGPAdvertisement
	for _, obj := range w.Advs {
		a, err := config.BGPAdvertisementFromAPI(obj, aliases)
		if err != nil {
			addProblem(d.AdvProblems, obj.Name, err.Error())
			continue
		}
		advs = append(advs, a)
	}

	plan := bgpplan.PlanRoutes(bgpplan.Input{Services: assigned(w.Services, w.Pools), Pools: w.Pools, Advertisements: advs, Peers: planPeers, Node: w.Node})
	for _, pr := range plan.Problems {
		if pr.Peer != "" {
			addProblem(d.PeerProblems, pr.Peer, pr.String())
			continue
		}
		for _, name := range problemAdvertisements(pr.Object) {
			addProblem(d.AdvProblems, name, pr.Message)
		}
	}
	// A Service's list of peers is shared with every Service of the same
	// peers: at 10,000 Services there are a handful of distinct lists, not
	// 10,000 (nor a set per Service to make them from). A list is extended
	// by one peer at a time, in plan.Peers' order (by name, so lists come
	// out sorted), and each extension of a list by a peer is made once.
	// The routes' communities likewise are converted once per list of
	// the plan (the plan shares them between routes).
	type extension struct {
		list *string // the list's first element; nil for the empty list
		n    int     // its length
		peer int
	}
	extended := map[extension][]string{}
	type communityList struct {
		first *config.Community
		n     int
	}
	wire := map[communityList][]bgp.Community{}
	for i, pp := range plan.Peers {
		d.Peers = append(d.Peers, sessions[pp.Peer])
		routes := make([]bgp.Route, 0, len(pp.Routes))
		for _, r := range pp.Routes {
			var cs []bgp.Community
			if len(r.Communities) > 0 {
				// Lists that start at the same element and are as long
				// are the same list.
				k := communityList{&r.Communities[0], len(r.Communities)}
				if cs = wire[k]; cs == nil {
					cs = wireCommunities(r.Communities)
					wire[k] = cs
				}
			}
			routes = append(routes, bgp.Route{Prefix: r.Prefix, LocalPref: r.LocalPref, Communities: cs})
			for _, svc := range r.Services {
				cur := d.Statuses[svc]
				if len(cur) > 0 && cur[len(cur)-1] == pp.Peer {
					continue
				}
				k := extension{n: len(cur), peer: i}
				if len(cur) > 0 {
					k.list = &cur[0]
				}
				next, ok := extended[k]
				if !ok {
					next = make([]string, len(cur)+1)
					copy(next, cur)
					next[len(cur)] = pp.Peer
					extended[k] = next
				}
				d.Statuses[svc] = next
			}
		}
		d.Routes[pp.Peer] = routes
	}
	d.HoldOverRestart = w.NodeReady && !w.Cordoned && holdsOverRestart(d.Peers, d.Routes)
	return d
}

// holdsOverRestart tells whether every session sent routes has graceful
// restart: a router without it drops the routes when the session goes,
// and the speaker had better move the traffic first.
func holdsOverRestart(peers []bgp.Peer, routes map[string][]bgp.Route) bool {
	for _, p := range peers {
		if len(routes[p.Name]) > 0 && !p.GracefulRestart {
			return false
		}
	}
	return true
}

// assigned keeps of each Service the addresses the controller can have
// given it: those in the pool its barelb.io/ip-allocated-from-pool
// annotation names. A second writer of the status (a user, another
// load-balancer implementation) must not make the node advertise a
// node's or the gateway's address. Services left without an address are
// dropped.
func assigned(services []bgpplan.Service, pools map[string]*config.Pool) []bgpplan.Service {
	out := services[:0:0]
	for _, svc := range services {
		addrs := config.AnnouncedAddresses(pools[svc.Pool], svc.Addresses)
		if len(addrs) == 0 {
			continue
		}
		svc.Addresses = addrs
		out = append(out, svc)
	}
	return out
}

// sessionOf is the session the speaker opens for p. The password comes
// from spec.password or from the passwordSecret in secrets; source names
// the Secret ("" for spec.password).
func sessionOf(p *config.BGPPeer, secrets map[string]*corev1.Secret, nextHopV4, nextHopV6 netip.Addr) (out bgp.Peer, source string, err error) {
	out = bgp.Peer{
		Name: p.Name, Address: p.Address, Interface: p.Interface, Port: p.Port, SourceAddress: p.SourceAddress,
		LocalASN: p.MyASN, RouterID: p.RouterID,
		HoldTime: p.HoldTime, KeepaliveTime: p.KeepaliveTime, ConnectRetry: p.ConnectTime,
		Password: p.Password, GracefulRestart: p.GracefulRestart, DisableMP: p.DisableMP,
		// Routes of the session's own family take its local address as
		// next hop; the other family's take the node's InternalIP of it.
		NextHopV4: nextHopV4, NextHopV6: nextHopV6,
	}
	switch p.DynamicASN {
	case config.DynamicASNInternal:
		out.ASN = p.MyASN
	case config.DynamicASNExternal:
		out.ASN = 0 // whatever the peer presents
	default:
		out.ASN = p.PeerASN
	}
	if p.EBGPMultiHop {
		out.EBGPMultiHopTTL = 255
	}
	if ref := p.PasswordSecret; ref != nil {
		secret := secrets[ref.Name]
		if secret == nil {
			return bgp.Peer{}, ref.Name, fmt.Errorf("passwordSecret %s/%s: no such Secret; the session is not opened until it exists", ref.Namespace, ref.Name)
		}
		pw, ok := secret.Data[SecretPasswordKey]
		if !ok || len(pw) == 0 {
			return bgp.Peer{}, ref.Name, fmt.Errorf("passwordSecret %s/%s has no %q key (a Secret of type %s); the session is not opened until it has", ref.Namespace, ref.Name, SecretPasswordKey, corev1.SecretTypeBasicAuth)
		}
		if len(pw) > 80 {
			return bgp.Peer{}, ref.Name, fmt.Errorf("passwordSecret %s/%s: the password is %d bytes long; TCP MD5 allows at most 80", ref.Namespace, ref.Name, len(pw))
		}
		out.Password = string(pw)
		source = ref.Name
	}
	return out, source, nil
}

// problemAdvertisements reads the advertisement names out of a bgpplan
// Problem's Object ("BGPAdvertisement NAME" or "BGPAdvertisements [A B]").
func problemAdvertisements(object string) []string {
	if name, ok := strings.CutPrefix(object, "BGPAdvertisement "); ok {
		return []string{name}
	}
	if list, ok := strings.CutPrefix(object, "BGPAdvertisements "); ok {
		return strings.Fields(strings.Trim(list, "[]"))
	}
	return nil
}

// nodeOf is bgpplan's view of a Node.
func nodeOf(n *corev1.Node) (bgpplan.Node, []netip.Addr) {
	out := bgpplan.Node{Name: n.Name, Labels: labels.Set(n.Labels)}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue {
			out.NetworkUnavailable = true
		}
	}
	var ips []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	return out, ips
}

// wireCommunities is cs as the wire package takes them.
func wireCommunities(cs []config.Community) []bgp.Community {
	if len(cs) == 0 {
		return nil
	}
	out := make([]bgp.Community, 0, len(cs))
	for _, c := range cs {
		if asn, value, ok := c.Standard(); ok {
			out = append(out, bgp.Community{Global: uint32(asn), Local1: uint32(value)})
		} else if g, l1, l2, ok := c.Large(); ok {
			out = append(out, bgp.Community{Large: true, Global: g, Local1: l1, Local2: l2})
		}
	}
	return out
}
