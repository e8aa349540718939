package ra

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// Options configure Run.
type Options struct {
	// Interval is the time between advertisements once the first few are
	// out; 10 s (FRR's for unnumbered BGP) when 0.
	Interval time.Duration
	Log      logr.Logger
	// OpenSocket, when set, wraps the opening of the socket and the
	// interface lookup (tests open them inside a network namespace).
	OpenSocket func(open func() error) error
	// OnRouter, when set, is called with the link-local source address of
	// every Router Advertisement heard on the interface from another host
	// (the router's address for unnumbered BGP), from Run's reading
	// goroutine.
	OnRouter func(netip.Addr)
}

// allNodes is the link-local all-nodes multicast group, where
// unsolicited advertisements go (RFC 4861 §6.2.4).
var allNodes = netip.MustParseAddr("ff02::1")

// fastCount advertisements go out a second apart first, so that the
// router hears of the host at once (RFC 4861 §6.2.4 does the same for a
// router's first advertisements).
const fastCount = 3

// Run sends advertisements on the interface ifName until ctx ends. It
// returns an error when it cannot start (no such interface, no link-local
// address yet); the caller tries again later.
func Run(ctx context.Context, ifName string, opts Options) error {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.OpenSocket == nil {
		opts.OpenSocket = func(open func() error) error { return open() }
	}
	var (
		c    *ndp.Conn
		ifi  *net.Interface
		self netip.Addr
	)
	err := opts.OpenSocket(func() error {
		var err error
		if ifi, err = net.InterfaceByName(ifName); err != nil {
			return fmt.Errorf("ra: %w", err)
		}
		if c, self, err = ndp.Listen(ifi, ndp.LinkLocal); err != nil {
			return fmt.Errorf("ra: listening on %s: %w", ifName, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Close()
	// Only Router Advertisements are read: the kernel drops every other
	// ICMPv6 message for this socket rather than queue it.
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("ra: filtering ICMPv6 on %s: %w", ifName, err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			m, _, from, err := c.ReadFrom()
			if err != nil {
				return // closed
			}
			from = from.WithZone("")
			if _, ok := m.(*ndp.RouterAdvertisement); ok && from.IsLinkLocalUnicast() && from != self.WithZone("") && opts.OnRouter != nil {
				opts.OnRouter(from)
			}
		}
	}()
	defer func() { _ = c.Close(); <-readDone }()
	m := &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  0,
		Options:         []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}},
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for sent := 0; ; sent++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := c.WriteTo(m, nil, allNodes); err != nil {
			opts.Log.V(1).Info("sending a router advertisement failed", "interface", ifName, "error", err.Error())
		}
		next := opts.Interval
		if sent < fastCount {
			next = time.Second
		}
		t.Reset(next)
	}
}
