package l2announcer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/layer2"
	"github.com/barelb/barelb/internal/metrics"
)

// Event reasons of the Observer.
const (
	// ReasonStrictARPOff: this node's kernel answers ARP for an assigned
	// address by itself (kube-proxy's IPVS mode without strictARP).
	ReasonStrictARPOff = "StrictARPOff"
	// ReasonStrictARPFixed: it no longer does.
	ReasonStrictARPFixed = "StrictARPFixed"
	// ReasonNoInterface: this node won an address but no interface may
	// answer for it.
	ReasonNoInterface = "NoInterface"
	// ReasonOutsideSubnets: no node has an interface in a subnet holding
	// an address, so any node may announce it, on every suitable
	// interface (the fallback rule).
	ReasonOutsideSubnets = "AddressOutsideSubnets"
	// ReasonNoCommonEndpoint: Services with externalTrafficPolicy Local
	// share an address, and no node that may announce it holds a ready
	// endpoint of every one of them; nobody announces it.
	ReasonNoCommonEndpoint = "NoCommonEndpoint"
)

// DefaultRecheckInterval is how often the Observer re-reads interfaces and
// sysctls between plans: they change without any Kubernetes event.
const DefaultRecheckInterval = 10 * time.Second

// strictARPAdvice is what to do about a kernel that answers ARP.
const strictARPAdvice = "set strictARP: true in kube-proxy's configuration (ConfigMap kube-system/kube-proxy, config.conf: ipvs.strictARP) " +
	"or the sysctls net.ipv4.conf.all.arp_ignore=1 and net.ipv4.conf.all.arp_announce=2 on every node"

// Observer reports what a plan means beyond the wire: the addresses
// announced, an address this node won but cannot answer for, and a kernel
// that answers ARP for assigned addresses by itself — what kube-proxy's
// IPVS mode does without strictARP, as it puts every Service address on
// kube-ipvs0 of every node: then every node answers, whoever barelb
// elected (split brain). It says so with a log line, Events on the Node
// and the Services, and metrics; it re-checks after every plan and every
// Interval, since sysctls change without events.
type Observer struct {
	// APIReader, when set, reads kube-system/kube-proxy to name the cause;
	// its absence or a refusal is fine.
	APIReader client.Reader
	Recorder  record.EventRecorder
	Log       logr.Logger
	Node      string
	// Metrics may be nil.
	Metrics *metrics.Speaker
	// Interfaces reads the host's interfaces, for the periodic re-check.
	Interfaces func() ([]layer2.Interface, error)
	// SysctlRoot is /proc/sys when empty.
	SysctlRoot string
	// Interval is DefaultRecheckInterval when zero.
	Interval time.Duration

	mu sync.Mutex
	// vips are the assigned IPv4 addresses of the last plan with their
	// Services (records shared with the cache), sorted by address: a
	// third of the memory of a map at 10,000 addresses.
	vips []vipService
	// answered is what the kernel answered for at the last check, as
	// logged ("" when nothing).
	answered string
	// warned are the Services told about the kernel's answers.
	warned map[string]bool
	// noInterface are the Services told that no interface may answer.
	noInterface map[string]bool
	// outsideSubnets are the addresses told to be outside every node's
	// subnets.
	outsideSubnets map[netip.Addr]bool
	// noCommonEndpoint are the addresses told to have no node with
	// endpoints of every Service sharing them.
	noCommonEndpoint map[netip.Addr]bool
}

// NeedLeaderElection makes the re-check run on every speaker.
func (o *Observer) NeedLeaderElection() bool { return false }

// Start re-checks every Interval until ctx ends.
func (o *Observer) Start(ctx context.Context) error {
	interval := o.Interval
	if interval <= 0 {
		interval = DefaultRecheckInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		host, err := o.Interfaces()
		if err != nil {
			o.Log.Error(err, "re-checking strictARP")
			continue
		}
		o.mu.Lock()
		o.checkStrictARP(ctx, host)
		o.mu.Unlock()
	}
}

// planned is told every plan; o may be nil.
func (o *Observer) planned(ctx context.Context, in *inputs, plan []election.L2Announcement, want map[netip.Addr][]string, host []layer2.Interface) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.vips = o.vips[:0]
	for _, s := range in.services {
		svc := in.byKey[s.Key]
		if svc == nil {
			continue
		}
		for _, ip := range s.Addresses {
			if ip.Unmap().Is4() {
				o.vips = append(o.vips, vipService{address: ip.Unmap(), service: svc})
			}
		}
	}
	slices.SortFunc(o.vips, func(a, b vipService) int { return a.address.Compare(b.address) })
	o.reportNoInterface(in, plan, want)
	o.reportOutsideSubnets(in, plan, want)
	o.reportNoCommonEndpoint(in, plan)
	o.checkStrictARP(ctx, host)
}

// reportNoInterface tells a Service once when this node won its address
// but no interface may answer for it (an L2Advertisement naming interfaces
// this node lacks, say).
func (o *Observer) reportNoInterface(in *inputs, plan []election.L2Announcement, want map[netip.Addr][]string) {
	now := map[string]bool{}
	for _, a := range plan {
		if a.Node != o.Node || len(want[a.Address]) > 0 {
			continue
		}
		for _, key := range a.Services {
			now[key] = true
			svc := in.byKey[key]
			if o.noInterface[key] || svc == nil {
				continue
			}
			named := "the default rule (an interface with the address's subnet, or any suitable one)"
			if len(a.Interfaces) > 0 {
				named = "interfaces " + strings.Join(a.Interfaces, ", ")
			}
			o.Recorder.Eventf(svc.Ref(), corev1.EventTypeWarning, ReasonNoInterface,
				"node %q won %s but none of %s exists there and can answer ARP/NDP; it is not announced", o.Node, a.Address, named)
		}
	}
	o.noInterface = now
}

// reportOutsideSubnets tells a Service once when this node announces its
// address although no node's subnet holds it (election.L2Announcement.
// OutsideSubnets): every node was a candidate, and it answers on every
// suitable interface, which may not reach the clients.
func (o *Observer) reportOutsideSubnets(in *inputs, plan []election.L2Announcement, want map[netip.Addr][]string) {
	now := map[netip.Addr]bool{}
	for _, a := range plan {
		if a.Node != o.Node || !a.OutsideSubnets || len(want[a.Address]) == 0 {
			continue
		}
		now[a.Address] = true
		if o.outsideSubnets[a.Address] {
			continue
		}
		for _, key := range a.Services {
			if svc := in.byKey[key]; svc != nil {
				o.Recorder.Eventf(svc.Ref(), corev1.EventTypeWarning, ReasonOutsideSubnets,
					"no node has an interface in a subnet holding %s: any node may announce it; node %q answers on %s (the fallback rule: every interface that can answer)",
					a.Address, o.Node, strings.Join(want[a.Address], ", "))
			}
		}
	}
	o.outsideSubnets = now
}

// reportNoCommonEndpoint tells the Services sharing an address once when
// no node may announce it because none holds a ready endpoint of every
// Service with Local traffic on it (election.L2Announcement.
// NoCommonEndpoint). One speaker tells, the plan's Reporter; it tells
// again after the address was announced in between.
func (o *Observer) reportNoCommonEndpoint(in *inputs, plan []election.L2Announcement) {
	now := map[netip.Addr]bool{}
	for _, a := range plan {
		if !a.NoCommonEndpoint || a.Reporter != o.Node {
			continue
		}
		now[a.Address] = true
		if o.noCommonEndpoint[a.Address] {
			continue
		}
		o.Log.Info("no node holds a ready endpoint of every Service with Local traffic sharing an address; not announced",
			"address", a.Address.String(), "services", a.Services)
		for _, key := range a.Services {
			if svc := in.byKey[key]; svc != nil {
				o.Recorder.Eventf(svc.Ref(), corev1.EventTypeWarning, ReasonNoCommonEndpoint,
					"address %s is shared by %s; with externalTrafficPolicy Local it is announced only from a node holding a ready endpoint of every one of them, and no node does: it is not announced",
					a.Address, strings.Join(a.Services, ", "))
			}
		}
	}
	o.noCommonEndpoint = now
}

// vipService is an assigned address and one Service it is assigned to.
type vipService struct {
	address netip.Addr
	service *servicecache.Service
}

// checkStrictARP compares the kernel's answers with the last plan's
// addresses and reports a change. o.mu is held.
func (o *Observer) checkStrictARP(ctx context.Context, host []layer2.Interface) {
	vips := make([]netip.Addr, 0, len(o.vips))
	for i, v := range o.vips {
		if i == 0 || v.address != o.vips[i-1].address {
			vips = append(vips, v.address)
		}
	}
	addrs, lans := KernelAnswers(vips, host, o.arpIgnore)
	if o.Metrics != nil {
		o.Metrics.KernelAnswersARP.Set(float64(len(addrs)))
	}
	answered := ""
	if len(addrs) > 0 {
		answered = fmt.Sprintf("%s on %s", joinAddrs(addrs), strings.Join(lans, ", "))
	}
	if answered != o.answered {
		o.answered = answered
		node := nodeRef(o.Node)
		if answered == "" {
			o.Log.Info("the kernel no longer answers ARP for assigned addresses by itself: only the elected speaker answers")
			o.Recorder.Event(node, corev1.EventTypeNormal, ReasonStrictARPFixed,
				"the kernel no longer answers ARP for Service addresses by itself; only the elected node answers")
			o.warned = nil
		} else {
			msg := fmt.Sprintf("this node's kernel answers ARP for %s by itself (the addresses are on a local interface and arp_ignore is 0), "+
				"as does every node where they are, so clients reach whichever node answered last (split brain)%s; %s",
				answered, o.kubeProxyCause(ctx), strictARPAdvice)
			o.Log.Error(errors.New("strictARP off"), msg)
			o.Recorder.Event(node, corev1.EventTypeWarning, ReasonStrictARPOff, msg)
		}
	}
	if o.warned == nil {
		o.warned = map[string]bool{}
	}
	for _, ip := range addrs {
		first, _ := slices.BinarySearchFunc(o.vips, ip, func(v vipService, ip netip.Addr) int { return v.address.Compare(ip) })
		for _, v := range o.vips[first:] {
			if v.address != ip {
				break
			}
			svc := v.service
			key := svc.Key()
			if o.warned[key] {
				continue
			}
			o.warned[key] = true
			o.Recorder.Eventf(svc.Ref(), corev1.EventTypeWarning, ReasonStrictARPOff,
				"node %q's kernel answers ARP for %s by itself, as does every node where kube-proxy (IPVS) put it: clients may reach any of them; %s",
				o.Node, ip, strictARPAdvice)
		}
	}
}

// nodeRef is node for Events. Its UID is the node's name, as the kubelet
// does it, which is what `kubectl describe node` looks for.
func nodeRef(node string) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node, UID: types.UID(node)}
}

// kubeProxyReadTimeout bounds reading kube-proxy's ConfigMap.
const kubeProxyReadTimeout = 2 * time.Second

// kubeProxyCause names kube-proxy's configuration when it can be read and
// explains the problem.
func (o *Observer) kubeProxyCause(ctx context.Context) string {
	if o.APIReader == nil {
		return ""
	}
	// Under the plan's lock: a hung API server must not hold it.
	ctx, cancel := context.WithTimeout(ctx, kubeProxyReadTimeout)
	defer cancel()
	var cm corev1.ConfigMap
	if err := o.APIReader.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "kube-proxy"}, &cm); err != nil {
		o.Log.V(1).Info("cannot read kube-proxy's ConfigMap; not naming the cause", "error", err.Error())
		return ""
	}
	var cfg struct {
		Mode string `json:"mode"`
		IPVS struct {
			StrictARP bool `json:"strictARP"`
		} `json:"ipvs"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.conf"]), &cfg); err != nil {
		return ""
	}
	if cfg.Mode == "ipvs" && !cfg.IPVS.StrictARP {
		return "; kube-proxy's ConfigMap kube-system/kube-proxy says mode: ipvs with strictARP: false"
	}
	return ""
}

// arpIgnore is the effective net.ipv4.conf.IFACE.arp_ignore: the kernel
// takes the larger of "all" and the interface's own. An unreadable value
// counts as 0, the kernel's default.
func (o *Observer) arpIgnore(iface string) int {
	root := o.SysctlRoot
	if root == "" {
		root = "/proc/sys"
	}
	read := func(name string) int {
		raw, err := os.ReadFile(filepath.Join(root, "net", "ipv4", "conf", name, "arp_ignore"))
		if err != nil {
			return 0
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			return 0
		}
		return v
	}
	return max(read("all"), read(iface))
}

// KernelAnswers returns the addresses among vips that the kernel of a host
// with these interfaces answers ARP for by itself, and the LAN interfaces
// it answers on. An address counts when it is configured on a local
// interface (kube-ipvs0, lo, any) and an interface that may answer ARP
// (see layer2.Interface.Answerable) with an IPv4 address has arpIgnore 0
// — the kernel then answers for any local address — or 1 to 3 with the
// address on that very interface; 8 never answers.
func KernelAnswers(vips []netip.Addr, host []layer2.Interface, arpIgnore func(iface string) int) (addrs []netip.Addr, lans []string) {
	// kube-ipvs0 holds every Service address: index the local addresses
	// once, and read each LAN interface's sysctls once.
	local := map[netip.Addr][]string{}
	for _, i := range host {
		for _, p := range i.Prefixes {
			if a := p.Addr().Unmap(); a.Is4() {
				local[a] = append(local[a], i.Name)
			}
		}
	}
	type lanIgnore struct {
		name   string
		ignore int
	}
	var candidates []lanIgnore
	for _, i := range host {
		if i.Answerable() && hasIPv4(i.Prefixes) {
			candidates = append(candidates, lanIgnore{i.Name, arpIgnore(i.Name)})
		}
	}
	onLAN := map[string]bool{}
	for _, ip := range vips {
		ip = ip.Unmap()
		where := local[ip]
		if !ip.Is4() || len(where) == 0 {
			continue
		}
		answered := false
		for _, lan := range candidates {
			if lan.ignore == 0 || (lan.ignore < 8 && contains(where, lan.name)) {
				answered = true
				onLAN[lan.name] = true
			}
		}
		if answered {
			addrs = append(addrs, ip)
		}
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	for name := range onLAN {
		lans = append(lans, name)
	}
	sort.Strings(lans)
	return addrs, lans
}

func hasIPv4(prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Addr().Unmap().Is4() {
			return true
		}
	}
	return false
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// metrics are o's metrics; nil when o or they are.
func (o *Observer) metrics() *metrics.Speaker {
	if o == nil {
		return nil
	}
	return o.Metrics
}
