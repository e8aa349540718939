package bgpadvertiser

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"

	"github.com/go-logr/logr"

	"github.com/barelb/barelb/internal/bfd"
	"github.com/barelb/barelb/internal/metrics"
)

// peerResetter closes BGP sessions at once (bgp.Speaker.ResetPeer).
type peerResetter interface {
	ResetPeer(ctx context.Context, name, reason string) error
}

// bfdControl runs a BFD session for every BGPPeer with a bfdProfile and
// closes that peer's BGP session the moment BFD declares the peer down,
// so that the router drops this node's routes now rather than at the
// hold time. The session then reconnects as usual, without waiting for
// BFD (RFC 5882's non-strict use, as FRR's default): a router that runs
// BFD only for established sessions, as FRR does for dynamic neighbours
// (bgp listen range), would otherwise never bring BFD back, and the
// session would stay down for good. Its Manager (the UDP listeners on
// port 3784) starts with the first such peer, so that a node without BFD
// peers opens no BFD socket.
type bfdControl struct {
	log     logr.Logger
	peers   peerResetter
	metrics *metrics.SpeakerBGP
	// localFor finds the address the kernel sends from to reach remote.
	localFor func(remote netip.Addr) (netip.Addr, error)
	// verdict, when set, hears BFD's verdicts before they are acted on.
	verdict func(name string, down bool, diag string)

	mu      sync.Mutex
	ctx     context.Context // runs the Manager; set by run
	mgr     *bfd.Manager
	running map[string]bfd.Peer // by BGPPeer name, Local resolved
	names   map[bfd.Key][]string
	work    chan bfdWork
}

// bfdWork is a reset of the BGP sessions over a failed BFD session.
type bfdWork struct {
	names  []string
	reason string
}

func newBFDControl(log logr.Logger, peers peerResetter, m *metrics.SpeakerBGP) *bfdControl {
	return &bfdControl{log: log, peers: peers, metrics: m, localFor: kernelSource,
		running: map[string]bfd.Peer{}, names: map[bfd.Key][]string{}, work: make(chan bfdWork, 64)}
}

// run applies BFD's verdicts to the BGP sessions, in order, until ctx
// ends.
func (b *bfdControl) run(ctx context.Context) {
	b.mu.Lock()
	b.ctx = ctx
	b.mu.Unlock()
	for {
		select {
		case w := <-b.work:
			for _, name := range w.names {
				if err := b.peers.ResetPeer(ctx, name, w.reason); err != nil && ctx.Err() == nil {
					b.log.Error(err, "closing the BGP session BFD declared down", "peer", name)
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// close ends every BFD session and the Manager. It runs after the BGP
// sessions are closed, so the routers have dropped this node's routes
// already; the sessions are Removed first, which sends AdminDown where
// it is quick enough, but the Manager does not wait for the drain.
func (b *bfdControl) close() {
	b.mu.Lock()
	mgr := b.mgr
	b.mgr = nil
	keys := make([]bfd.Key, 0, len(b.running))
	for _, p := range b.running {
		keys = append(keys, p.Key())
	}
	b.running, b.names = map[string]bfd.Peer{}, map[bfd.Key][]string{}
	b.mu.Unlock()
	if mgr == nil {
		return
	}
	// Outside the lock: Close waits for the sessions' goroutines, which
	// may be waiting for it in onChange.
	for _, k := range keys {
		mgr.Remove(k)
	}
	mgr.Close()
}

// set makes the BFD sessions those of want (by BGPPeer name).
func (b *bfdControl) set(ctx context.Context, want map[string]bfd.Peer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	resolved := make(map[string]bfd.Peer, len(want))
	for name, p := range want {
		if !p.Local.IsValid() {
			local, err := b.localFor(p.Remote)
			if err != nil {
				errs = append(errs, fmt.Errorf("BFD with peer %s: %w", name, err))
				continue
			}
			p.Local = local
		}
		resolved[name] = p
	}
	if len(resolved) > 0 && b.mgr == nil {
		if b.ctx == nil {
			return errors.New("BFD is not running yet")
		}
		mgr, err := bfd.Start(b.ctx, bfd.Options{Log: b.log, OnChange: b.onChange})
		if err != nil {
			return fmt.Errorf("starting BFD: %w", err)
		}
		b.mgr = mgr
	}
	// Sessions gone or moved to another key.
	for name, old := range b.running {
		if p, ok := resolved[name]; ok && p.Key() == old.Key() {
			continue
		}
		delete(b.running, name)
		b.unname(old.Key(), name)
		if len(b.names[old.Key()]) == 0 {
			b.mgr.Remove(old.Key())
		}
		if _, still := resolved[name]; !still {
			b.metrics.BFDSessionUp.DeleteLabelValues(name)
		}
	}
	names := make([]string, 0, len(resolved))
	for name := range resolved {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := resolved[name]
		if old, ok := b.running[name]; ok && old == p {
			continue
		}
		if err := b.mgr.Add(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("BFD with peer %s: %w", name, err))
			continue
		}
		if _, ok := b.running[name]; !ok {
			b.names[p.Key()] = append(b.names[p.Key()], name)
			b.metrics.BFDSessionUp.WithLabelValues(name).Set(0)
		}
		b.running[name] = p
	}
	return errors.Join(errs...)
}

func (b *bfdControl) unname(k bfd.Key, name string) {
	list := b.names[k]
	for i, n := range list {
		if n == name {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(b.names, k)
	} else {
		b.names[k] = list
	}
}

// onChange is the Manager's OnChange: a failure closes the BGP sessions
// over that peer at once.
func (b *bfdControl) onChange(c bfd.Change) {
	b.mu.Lock()
	names := append([]string(nil), b.names[c.Peer]...)
	for _, name := range names {
		metrics.SetBool(b.metrics.BFDSessionUp.WithLabelValues(name), c.To == bfd.StateUp)
	}
	b.mu.Unlock()
	if len(names) == 0 {
		return
	}
	b.log.Info("BFD session changed", "peer", c.Peer.String(), "bgpPeers", names, "from", c.From.String(), "to", c.To.String(), "diag", c.Diag.String(), "peerFailed", c.PeerFailed())
	switch {
	case c.PeerFailed():
		b.tell(names, true, c.Diag.String())
		b.queue(bfdWork{names: names, reason: "BFD declared the peer down (" + c.Diag.String() + ")"})
	case c.To == bfd.StateUp:
		b.tell(names, false, "")
	}
}

func (b *bfdControl) tell(names []string, down bool, diag string) {
	if b.verdict == nil {
		return
	}
	for _, name := range names {
		b.verdict(name, down, diag)
	}
}

func (b *bfdControl) queue(w bfdWork) {
	select {
	case b.work <- w:
	default:
		// Never block a BFD session's goroutine for long: the queue
		// drains as fast as GoBGP takes requests.
		go func() { b.work <- w }()
	}
}

// kernelSource is the address the kernel would send from to reach remote:
// connecting a UDP socket picks it without sending anything.
func kernelSource(remote netip.Addr) (netip.Addr, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, bfd.ControlPort)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("finding the local address towards %s: %w", remote, err)
	}
	defer conn.Close()
	local, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.Addr{}, fmt.Errorf("finding the local address towards %s: unexpected %T", remote, conn.LocalAddr())
	}
	return local.AddrPort().Addr().Unmap(), nil
}
