package bgpadvertiser

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/barelb/barelb/internal/bgp"
	"github.com/barelb/barelb/internal/ra"
)

// raControl sends Router Advertisements (internal/ra) on every interface
// an unnumbered BGPPeer peers over: a router with unnumbered BGP (FRR's
// `neighbor IFACE interface`) learns the node's link-local address from
// them. It also listens to the router's own advertisements there: their
// source is the address the session goes to. A router heard for the
// first time (or at a new address) is news on changed, which makes the
// plan again.
type raControl struct {
	log logr.Logger
	// retry is the wait before starting again after a failure (no such
	// interface yet, no link-local address yet).
	retry time.Duration

	mu      sync.Mutex
	ctx     context.Context // set by run
	running map[string]context.CancelFunc
	pending []string // set before run
	// routers are the routers heard, by interface.
	routers map[string]netip.Addr
	changed chan event.GenericEvent
}

func newRAControl(log logr.Logger) *raControl {
	return &raControl{log: log, retry: 5 * time.Second, running: map[string]context.CancelFunc{},
		routers: map[string]netip.Addr{}, changed: make(chan event.GenericEvent, 1)}
}

// heard records a router's advertisement on an interface.
func (c *raControl) heard(iface string, router netip.Addr) {
	c.mu.Lock()
	old := c.routers[iface]
	c.routers[iface] = router
	c.mu.Unlock()
	if old == router {
		return
	}
	c.log.Info("heard a router on the link of an unnumbered peer", "interface", iface, "router", router.String())
	select {
	case c.changed <- event.GenericEvent{Object: &corev1.Node{}}:
	default: // a plan is pending already
	}
}

// peerRouters sets the address of every unnumbered session to the router
// heard on its interface (none yet: left unset, and the speaker says so),
// and its next hop to the node's link-local address there.
func (c *raControl) peerRouters(peers []bgp.Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range peers {
		if name := peers[i].Interface; name != "" {
			peers[i].Address = c.routers[name]
			peers[i].NextHopV6 = linkLocalOf(name)
		}
	}
}

// linkLocalOf is an interface's IPv6 link-local address (none when it has
// none, or no such interface exists).
func linkLocalOf(name string) netip.Addr {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// run starts the senders set so far and stops them all when ctx ends.
func (c *raControl) run(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	pending := c.pending
	c.mu.Unlock()
	c.set(pending)
	<-ctx.Done()
	c.set(nil)
}

// set makes the senders those of ifaces.
func (c *raControl) set(ifaces []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		c.pending = ifaces
		return
	}
	want := map[string]bool{}
	for _, name := range ifaces {
		want[name] = true
	}
	for name, cancel := range c.running {
		if !want[name] || c.ctx.Err() != nil {
			cancel()
			delete(c.running, name)
		}
	}
	if c.ctx.Err() != nil {
		return
	}
	for name := range want {
		if _, ok := c.running[name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(c.ctx)
		c.running[name] = cancel
		go c.send(ctx, name)
	}
}

func (c *raControl) send(ctx context.Context, name string) {
	log := c.log.WithValues("interface", name)
	log.Info("sending router advertisements for unnumbered BGP")
	for {
		err := ra.Run(ctx, name, ra.Options{Log: log, OnRouter: func(a netip.Addr) { c.heard(name, a) }})
		if ctx.Err() != nil {
			return
		}
		log.Error(err, "sending router advertisements; trying again", "in", c.retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.retry):
		}
	}
}

// unnumberedInterfaces are the interfaces of the unnumbered sessions,
// sorted, each once.
func unnumberedInterfaces(peers []bgp.Peer) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range peers {
		if p.Interface != "" && !seen[p.Interface] {
			seen[p.Interface] = true
			out = append(out, p.Interface)
		}
	}
	sort.Strings(out)
	return out
}
