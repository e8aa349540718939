package app

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"net/netip"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/barelb/barelb/internal/k8s/advertiser"
	"github.com/barelb/barelb/internal/k8s/announcer"
	"github.com/barelb/barelb/internal/layer2"
	"github.com/barelb/barelb/internal/membership"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The speaker's defaults.
const (
	SpeakerMetricsBindAddress     = ":7473"
	SpeakerHealthProbeBindAddress = ":7475"
	// NodeNameEnv is the environment variable --node-name defaults to; the
	// DaemonSet sets it from the Downward API's spec.nodeName.
	NodeNameEnv = "NODE_NAME"
)

// SpeakerOptions are the speaker's settings.
type SpeakerOptions struct {
	Options
	// NodeName is the node this speaker runs on and announces from.
	NodeName string
	// LoadBalancerClass must match the controller's --lb-class.
	LoadBalancerClass string
	// MemberlistAddress is where this speaker's memberlist listens and is
	// reached; the node's InternalIP when empty.
	MemberlistAddress string
	// MemberlistPort is memberlist's TCP and UDP port.
	MemberlistPort int
	// MemberlistKeyEnv names the environment variable holding the
	// memberlist secret (from a Secret); unencrypted when it is unset.
	MemberlistKeyEnv string
	// HandOver is how long a stopping speaker keeps answering after
	// leaving memberlist, so that the next announcer has announced before
	// it goes quiet.
	HandOver time.Duration
	// GratuitousInterval repeats the gratuitous announcement of every
	// announced address this often; 0 is off.
	GratuitousInterval time.Duration
}

// MemberlistKeyEnv is the default environment variable of the memberlist
// secret.
const MemberlistKeyEnv = "BARELB_MEMBERLIST_KEY"

func parseSpeaker(inv Invocation) (SpeakerOptions, error) {
	o := SpeakerOptions{
		Options:          DefaultOptions(SpeakerMetricsBindAddress, SpeakerHealthProbeBindAddress),
		MemberlistPort:   membership.DefaultPort,
		MemberlistKeyEnv: MemberlistKeyEnv,
		HandOver:         2 * time.Second,
	}
	err := parseFlags("speaker", inv, &o.Options, func(fs *flag.FlagSet) {
		fs.StringVar(&o.NodeName, "node-name", "",
			"Name of the node this speaker runs on (default $"+NodeNameEnv+").")
		fs.StringVar(&o.LoadBalancerClass, "lb-class", "",
			"Announce only Services with this spec.loadBalancerClass; must match the controller's.")
		fs.StringVar(&o.MemberlistAddress, "memberlist-address", "",
			"Address memberlist listens on and is reached at (default: the node's InternalIP).")
		fs.IntVar(&o.MemberlistPort, "memberlist-port", o.MemberlistPort, "Memberlist's TCP and UDP port.")
		fs.StringVar(&o.MemberlistKeyEnv, "memberlist-key-env", o.MemberlistKeyEnv,
			"Environment variable holding the memberlist secret; gossip is unencrypted when it is unset.")
		fs.DurationVar(&o.HandOver, "handover", o.HandOver,
			"How long a stopping speaker keeps answering after leaving memberlist.")
		fs.DurationVar(&o.GratuitousInterval, "gratuitous-interval", 0,
			"Repeat the gratuitous ARP/unsolicited advertisement of every announced address this often, to keep switches' MAC tables fresh; 0 is off.")
	})
	if err != nil || o.ShowVersion {
		return o, err
	}
	if o.NodeName == "" {
		o.NodeName = inv.getenv(NodeNameEnv)
	}
	if o.NodeName == "" {
		return o, usageErrorf("no node name: set --node-name or $%s (from the Downward API's spec.nodeName)", NodeNameEnv)
	}
	if errs := validation.IsDNS1123Subdomain(o.NodeName); len(errs) > 0 {
		return o, usageErrorf("node name %q is not a node name: %v", o.NodeName, errs)
	}
	if o.GratuitousInterval < 0 {
		return o, usageErrorf("--gratuitous-interval %v is negative", o.GratuitousInterval)
	}
	return o, nil
}

// RunSpeaker runs the speaker, which announces Services' addresses from one
// node, until ctx ends. Its error goes to Exit.
func RunSpeaker(ctx context.Context, inv Invocation) error {
	o, err := parseSpeaker(inv)
	if err != nil {
		return err
	}
	if o.ShowVersion {
		return printVersion(inv, "speaker")
	}
	return start(ctx, inv, startup{
		program:   "speaker",
		options:   o.Options,
		logValues: []any{"node", o.NodeName},
		manager:   []Option{WithReadyAfterSync(configObjects()...), WithCacheTransforms(announcer.CacheTransforms())},
		setup:     func(mgr manager.Manager) error { return setupSpeaker(ctx, mgr, o, inv.getenv(o.MemberlistKeyEnv)) },
	})
}

// setupSpeaker joins the speakers' memberlist and adds the layer-2
// announcer and the BGP advertiser (which opens sessions only once
// BGPPeers select the node).
func setupSpeaker(ctx context.Context, mgr manager.Manager, o SpeakerOptions, secret string) error {
	log := mgr.GetLogger().WithName("speaker")
	addr := o.MemberlistAddress
	if addr == "" {
		ip, err := announcer.NodeAddress(ctx, mgr.GetAPIReader(), o.NodeName)
		if err != nil {
			return fmt.Errorf("finding this node's address for memberlist (or set --memberlist-address): %w", err)
		}
		addr = ip.String()
	}
	var key []byte
	if secret != "" {
		// Any secret makes a 256-bit key, so the Secret may hold text.
		sum := sha256.Sum256([]byte(secret))
		key = sum[:]
	}
	m, err := membership.New(membership.Config{NodeName: o.NodeName, BindAddr: addr, BindPort: o.MemberlistPort, SecretKey: key, Logger: log})
	if err != nil {
		return err
	}
	answerCtx, stopAnswering := context.WithCancel(context.Background())
	members := &announcer.MemberlistMembers{Membership: m, Log: log}
	changes := make(chan event.GenericEvent, 1)
	network := &announcer.HostNetwork{Ctx: answerCtx, Log: log.WithName("layer2")}
	r := &announcer.Reconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("barelb-speaker"), Log: log.WithName("layer2"),
		Node: o.NodeName, Namespace: o.Namespace, LBClass: o.LoadBalancerClass,
		Members: members, Network: network,
	}
	network.Options = layer2.Options{OnConflict: r.HandleConflict, OnProbed: r.HandleProbed, GratuitousInterval: o.GratuitousInterval}
	err = announcer.Observe(mgr, r, members, network, ctrlmetrics.Registry)
	if err == nil {
		err = announcer.Setup(mgr, r, changes)
	}
	if err == nil {
		// The BGP router ID defaults to the address memberlist uses (the
		// node's InternalIP unless --memberlist-address says otherwise).
		routerID, _ := netip.ParseAddr(addr)
		err = advertiser.Setup(ctx, mgr, advertiser.Options{Node: o.NodeName, Namespace: o.Namespace, LBClass: o.LoadBalancerClass,
			RouterID: routerID, Registerer: ctrlmetrics.Registry})
	}
	if err != nil {
		stopAnswering()
		_ = m.Shutdown()
		return err
	}
	self, err := netip.ParseAddr(addr)
	if err != nil {
		stopAnswering()
		_ = m.Shutdown()
		return fmt.Errorf("--memberlist-address %q: %w", addr, err)
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		go members.Forward(ctx, changes)
		if peers, err := announcer.Peers(ctx, mgr.GetAPIReader(), o.NodeName, self, o.MemberlistPort); err != nil {
			log.Error(err, "finding memberlist peers")
		} else if _, err := m.Join(ctx, peers); err != nil && ctx.Err() == nil {
			log.Error(err, "joining memberlist; retrying in the background", "peers", peers)
		}
		<-ctx.Done()
		// Leave first, so that the others elect new announcers at once,
		// and keep answering until they have announced.
		if err := m.Leave(time.Second); err != nil {
			log.Error(err, "leaving memberlist")
		}
		time.Sleep(o.HandOver)
		stopAnswering()
		return m.Shutdown()
	}))
}
