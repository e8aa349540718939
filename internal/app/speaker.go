package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/barelb/barelb/internal/k8s/bgpadvertiser"
	"github.com/barelb/barelb/internal/k8s/heartbeat"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/k8s/speakerglue"
	"github.com/barelb/barelb/internal/layer2"
	"github.com/barelb/barelb/internal/membership"
	barelbscheme "github.com/barelb/barelb/internal/scheme"
	"github.com/barelb/barelb/internal/startuppages"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The speaker's defaults.
const (
	SpeakerMetricsBindAddress     = ":7473"
	SpeakerHealthProbeBindAddress = ":7475"
	// NodeNameEnv is the environment variable --node-name defaults to; the
	// DaemonSet sets it from the Downward API's spec.nodeName.
	NodeNameEnv = "NODE_NAME"
	// NodeIPEnv is the environment variable --memberlist-address
	// defaults to; the DaemonSet sets it from the Downward API's
	// status.hostIP, so that no API read is needed to start.
	NodeIPEnv = "NODE_IP"
)

// SpeakerOptions are the speaker's settings.
type SpeakerOptions struct {
	Options
	// NodeName is the node this speaker runs on and announces from.
	NodeName string
	// LoadBalancerClass must match the controller's --lb-class.
	LoadBalancerClass string
	// Memberlist runs memberlist among the speakers to tell live ones
	// (the default). Without it the API tells them (Ready nodes whose
	// speaker renews its Lease), and a dead speaker on a Ready node keeps
	// its addresses until its Lease expires: for clusters where the memberlist port
	// cannot be opened between nodes (MetalLB's
	// speaker.memberlist.enabled=false).
	Memberlist bool
	// MemberlistAddress is where this speaker's memberlist listens and is
	// reached; the node's InternalIP when empty.
	MemberlistAddress string
	// MemberlistPort is memberlist's TCP and UDP port.
	MemberlistPort int
	// MemberlistEcho pings the nodes this speaker watches (ICMP echo
	// every 10 ms to up to three nodes), which finds a node cut off the
	// network in about 110 ms; off, memberlist's probes do, in a few
	// hundred.
	MemberlistEcho bool
	// MemberlistKeyEnv names the environment variable holding the
	// memberlist secret (from a Secret); unencrypted when it is unset.
	MemberlistKeyEnv string
	// MemberlistExtraKeysEnv names the environment variable holding
	// secrets also accepted (one per line), for rotating the secret.
	MemberlistExtraKeysEnv string
	// HandOver is how long a stopping speaker keeps answering after
	// leaving memberlist, so that the next announcer has announced before
	// it goes quiet.
	HandOver time.Duration
	// RestartHold, when set, makes a stopping speaker ask the others to
	// hold its node's layer-2 addresses for that long instead of handing
	// them over (membership.Restart): a DaemonSet's rolling update then
	// moves no address, and resets no connection in flight. Its node
	// forwards meanwhile; the hold ends early when the node goes silent.
	// In BGP mode, when every session sent routes has graceful restart
	// and the node is Ready and not cordoned, it leaves its routes as
	// they are (no graceful shutdown): the routers keep them over the
	// restart, and their ECMP routes do not change.
	RestartHold time.Duration
	// BGPGracefulShutdown is how long a stopping speaker advertises its
	// BGP routes with the GRACEFUL_SHUTDOWN community (RFC 8326) before
	// it closes its sessions; 0 closes them at once.
	BGPGracefulShutdown time.Duration
	// DrainOnCordon makes a cordoned node (kubectl cordon, kubectl drain)
	// drained for layer 2, as the barelb.io/drain label does: its
	// addresses move to other nodes make-before-break. Off by default:
	// cordoning is done for many reasons besides maintenance of the
	// network. Every speaker must be given the same value.
	DrainOnCordon bool
	// GratuitousInterval repeats the gratuitous announcement of every
	// announced address this often; 0 is off.
	GratuitousInterval time.Duration
	// MemoryLimitRatio is the share of the container's memory limit set
	// as the Go runtime's soft memory limit, unless GOMEMLIMIT is set; 0
	// is off.
	MemoryLimitRatio float64
	// PprofBindAddress serves net/http/pprof (heap and goroutine
	// profiles, to see where memory goes); empty or "0" is off.
	PprofBindAddress string
	// GCPercent is the garbage collection target (GOGC) unless $GOGC is
	// set; 0 leaves the runtime's default.
	GCPercent int
	// ReleaseStartupPages turns on giving back the resident pages of the
	// speaker's own code and read-only data (see internal/startuppages).
	// Off by default: those pages are file-backed page cache, shared and
	// reclaimable, and speaker memory targets count anonymous memory
	// (RssAnon) and the peak (VmHWM), which it does not change; it only
	// makes VmRSS look smaller. It is safe in every build mode (it never
	// drops pages the loader relocated).
	ReleaseStartupPages bool
	// ProgramPagesInterval is how often the speaker gives back those
	// pages when ReleaseStartupPages is on, the first time once its caches
	// are filled; 0 is once. Every minute by default: the pages a speaker keeps using
	// come back at the cost of a few hundred minor faults a minute, and
	// those a burst of work touched (a relist, a wave of plans and status
	// writes: 15-20 MiB of code) do not stay resident for long. With it on,
	// a release also follows each burst of work once it is over
	// (programPagesAfterBurst).
	ProgramPagesInterval time.Duration
}

// programPagesSettle is how long after its Service cache is filled the
// speaker first releases its program's pages: the init code and the
// initial lists are behind it then, and the manager's own caches (a few
// objects) are filled too. The first plans run after; the pages they
// leave go at the next release.
const programPagesSettle = time.Second

// programPagesAfterBurst is how long the speaker must have been quiet
// after a burst of work (thousands of plans and status writes; a single
// Service change at 10,000 Services counts too) before it releases what
// the burst left resident, instead of waiting for the next periodic
// release. Long enough that the pages a wave of changes keeps using are
// not dropped between its steps.
const programPagesAfterBurst = 5 * time.Second

// interfaceWatchInterval is how often the speaker looks for interfaces it
// answers on that were deleted and made again, or got another MAC: their
// addresses are answered on the new one from then on.
const interfaceWatchInterval = time.Second

// speakerEventCacheSize is how many objects the speaker's event
// correlator remembers (client-go's default is 4,096).
const speakerEventCacheSize = 256

// MemberlistKeyEnv is the default environment variable of the memberlist
// secret.
const MemberlistKeyEnv = "BARELB_MEMBERLIST_KEY"

// MemberlistExtraKeysEnv is the default environment variable of the
// memberlist secrets also accepted while the secret is rotated.
const MemberlistExtraKeysEnv = "BARELB_MEMBERLIST_EXTRA_KEYS"

func parseSpeaker(inv Invocation) (SpeakerOptions, error) {
	o := SpeakerOptions{
		Options:                DefaultOptions(SpeakerMetricsBindAddress, SpeakerHealthProbeBindAddress),
		Memberlist:             true,
		MemberlistPort:         membership.DefaultPort,
		MemberlistKeyEnv:       MemberlistKeyEnv,
		MemberlistExtraKeysEnv: MemberlistExtraKeysEnv,
		HandOver:               2 * time.Second,
		MemberlistEcho:         true,
		BGPGracefulShutdown:    bgpadvertiser.DefaultGracefulShutdown,
		MemoryLimitRatio:       DefaultMemoryLimitRatio,
		GCPercent:              DefaultGCPercent,
		ProgramPagesInterval:   time.Minute,
	}
	err := parseFlags("speaker", inv, &o.Options, func(fs *flag.FlagSet) {
		fs.StringVar(&o.NodeName, "node-name", "",
			"Name of the node this speaker runs on (default $"+NodeNameEnv+").")
		fs.StringVar(&o.LoadBalancerClass, "lb-class", "",
			"Announce only Services with this spec.loadBalancerClass; must match the controller's.")
		fs.BoolVar(&o.Memberlist, "memberlist", o.Memberlist,
			"Run memberlist among the speakers to tell live ones; with --memberlist=false node readiness from the API alone decides, "+
				"so a dead speaker on a Ready node keeps its addresses until its Lease expires, 20s (the --memberlist-* flags are then ignored).")
		fs.StringVar(&o.MemberlistAddress, "memberlist-address", "",
			"Address memberlist listens on and is reached at (default $"+NodeIPEnv+", else the node's InternalIP from the API).")
		fs.IntVar(&o.MemberlistPort, "memberlist-port", o.MemberlistPort, "Memberlist's TCP and UDP port.")
		fs.BoolVar(&o.MemberlistEcho, "memberlist-echo", o.MemberlistEcho,
			"Ping the nodes this speaker watches (ICMP echo every 10 ms to up to three other nodes, about 60 kB/s) to find a node cut off the network in about 110 ms; "+
				"false leaves it to memberlist's probes (a few hundred milliseconds), for networks that filter or rate-limit ICMP.")
		fs.StringVar(&o.MemberlistKeyEnv, "memberlist-key-env", o.MemberlistKeyEnv,
			"Environment variable holding the memberlist secret; gossip is unencrypted when it is unset.")
		fs.StringVar(&o.MemberlistExtraKeysEnv, "memberlist-extra-keys-env", o.MemberlistExtraKeysEnv,
			"Environment variable holding memberlist secrets accepted besides the secret itself, one per line, for rotating the secret without splitting the speakers (see README).")
		fs.DurationVar(&o.HandOver, "handover", o.HandOver,
			"How long a stopping speaker keeps answering after leaving memberlist.")
		fs.DurationVar(&o.RestartHold, "restart-hold", o.RestartHold,
			"When set, a stopping speaker asks the others to keep its node's layer-2 addresses where they are for this long (at most "+membership.MaxRestartHold.String()+
				"), expecting to be started again on the same node (a DaemonSet's rolling update), instead of handing them over; "+
				"the hold ends early when the node stops answering. 0 hands them over (--handover). "+
				"In BGP mode it also skips the graceful shutdown when every BGP session sent routes has graceful restart and the node is Ready and not cordoned: the routers keep the routes over the restart.")
		fs.DurationVar(&o.BGPGracefulShutdown, "bgp-graceful-shutdown", o.BGPGracefulShutdown,
			"How long a stopping speaker advertises its BGP routes with the GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326; LOCAL_PREF 0 to iBGP peers), "+
				"so that routers move traffic to other nodes, before it closes its sessions; 0 closes them at once. Keep the pod's terminationGracePeriodSeconds longer.")
		fs.BoolVar(&o.DrainOnCordon, "drain-on-cordon", false,
			"Treat a cordoned node (spec.unschedulable) as drained for layer 2, like the barelb.io/drain label (kubectl barelb drain): "+
				"its addresses move to other nodes make-before-break. Give every speaker the same value.")
		fs.DurationVar(&o.GratuitousInterval, "gratuitous-interval", 0,
			"Repeat the gratuitous ARP/unsolicited advertisement of every announced address this often, to keep switches' MAC tables fresh; 0 is off.")
		fs.Float64Var(&o.MemoryLimitRatio, "memory-limit-ratio", o.MemoryLimitRatio,
			"Share of the container's memory limit (its cgroup's) set as the Go runtime's soft memory limit, unless $GOMEMLIMIT sets one; 0 is off.")
		fs.StringVar(&o.PprofBindAddress, "pprof-bind-address", "",
			`Loopback address (127.0.0.1:port, [::1]:port or localhost:port) to serve Go's /debug/pprof profiles on over HTTP, without authentication; empty or "0" is off.`)
		fs.IntVar(&o.GCPercent, "gc-percent", o.GCPercent,
			"Garbage collection target percent (as GOGC), unless $GOGC sets one; 0 is the Go runtime's default (100).")
		fs.BoolVar(&o.ReleaseStartupPages, "release-startup-pages", o.ReleaseStartupPages,
			"Give back the resident pages of the speaker's own code and read-only data (client-go's start-up code, 25-30 MiB of file-backed page cache) that it no longer runs. "+
				"Off by default: it lowers VmRSS, not anonymous memory (RssAnon) or the peak (VmHWM).")
		fs.DurationVar(&o.ProgramPagesInterval, "program-pages-release-interval", o.ProgramPagesInterval,
			"With --release-startup-pages: how often to give back the pages (and whatever ran only since the last time), "+
				"the first time once its caches are filled, and 5s after each burst of work; a page still in use comes back from the page cache at its next touch (a minor fault). 0 is once.")
	})
	if err != nil || o.ShowVersion {
		return o, err
	}
	if o.NodeName == "" {
		o.NodeName = inv.getenv(NodeNameEnv)
	}
	if o.MemberlistAddress == "" {
		o.MemberlistAddress = inv.getenv(NodeIPEnv)
	}
	if o.NodeName == "" {
		return o, usageErrorf("no node name: set --node-name or $%s (from the Downward API's spec.nodeName)", NodeNameEnv)
	}
	if errs := validation.IsDNS1123Subdomain(o.NodeName); len(errs) > 0 {
		return o, usageErrorf("node name %q is not a node name: %v", o.NodeName, errs)
	}
	if o.PprofBindAddress != "" {
		if err := validateLoopbackAddress(o.PprofBindAddress); err != nil {
			return o, usageErrorf("--pprof-bind-address: %w", err)
		}
	}
	if o.MemoryLimitRatio < 0 || o.MemoryLimitRatio > 1 {
		return o, usageErrorf("--memory-limit-ratio %v: want a number from 0 to 1", o.MemoryLimitRatio)
	}
	if o.BGPGracefulShutdown < 0 {
		return o, usageErrorf("--bgp-graceful-shutdown %v is negative", o.BGPGracefulShutdown)
	}
	if o.RestartHold < 0 || o.RestartHold > membership.MaxRestartHold {
		return o, usageErrorf("--restart-hold %v: want 0 (hand over) up to %v", o.RestartHold, membership.MaxRestartHold)
	}
	if o.GratuitousInterval < 0 {
		return o, usageErrorf("--gratuitous-interval %v is negative", o.GratuitousInterval)
	}
	if o.GCPercent < 0 {
		return o, usageErrorf("--gc-percent %d is negative", o.GCPercent)
	}
	if o.ProgramPagesInterval < 0 {
		return o, usageErrorf("--program-pages-release-interval %v is negative", o.ProgramPagesInterval)
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
	// As early as the flags allow: the rate applies to allocations from
	// then on.
	runtime.MemProfileRate = heapProfileRate(o.PprofBindAddress, inv.getenv("GODEBUG"), runtime.MemProfileRate)
	return start(ctx, inv, startup{
		program:   "speaker",
		options:   o.Options,
		logValues: []any{"node", o.NodeName},
		manager: []Option{WithScheme(barelbscheme.NewSpeaker), WithReadyAfterSync(configObjects()...), WithCacheTransforms(l2announcer.CacheTransforms()),
			WithManagerOptions(func(mo *manager.Options) {
				mo.PprofBindAddress = o.PprofBindAddress
				// client-go's event correlator keeps 4,096 objects in each
				// of its caches (spam filter, aggregation): 5 MB once a
				// speaker has told 10,000 Services it announces them, for
				// nothing, since a Service gets one such Event. The
				// manager lives as long as the process, so the broadcaster
				// it does not own leaks nothing.
				//lint:ignore SA1019 the only way to set the correlator's options in controller-runtime v0.20
				mo.EventBroadcaster = record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{LRUCacheSize: speakerEventCacheSize}))
				// Built without the API server's discovery: the speaker
				// starts, and answers, while the API server is away.
				mo.MapperProvider = func(*rest.Config, *http.Client) (meta.RESTMapper, error) {
					return barelbscheme.StaticRESTMapper(mo.Scheme), nil
				}
				// Wait for the caches however long the API server is away:
				// the speaker answers meanwhile (controller-runtime's 2
				// minutes would end the process).
				mo.Controller.CacheSyncTimeout = speakerCacheSyncTimeout
				// Stopping takes the hand-over and the BGP graceful
				// shutdown (side by side), then closing the sessions:
				// controller-runtime's 30 s must not cut a long one short.
				stopping := max(o.HandOver, o.BGPGracefulShutdown) + speakerStopMargin
				if mo.GracefulShutdownTimeout == nil || *mo.GracefulShutdownTimeout < stopping {
					mo.GracefulShutdownTimeout = &stopping
				}
				// The speakers' Leases only (see internal/k8s/heartbeat).
				mo.Cache.ByObject[&coordinationv1.Lease{}] = cache.ByObject{
					Namespaces: map[string]cache.Config{o.Namespace: {}},
					Label:      labels.SelectorFromSet(labels.Set{heartbeat.LabelComponent: heartbeat.ComponentSpeaker}),
				}
			})},
		setup: func(mgr manager.Manager) error {
			applySoftMemoryLimit(mgr.GetLogger().WithName("speaker"), o.MemoryLimitRatio, inv.getenv("GOMEMLIMIT"), os.ReadFile)
			applyGCPercent(mgr.GetLogger().WithName("speaker"), o.GCPercent, inv.getenv("GOGC"))
			var secrets memberlistSecrets
			if o.Memberlist {
				secrets = memberlistSecretsFrom(inv.getenv(o.MemberlistKeyEnv), inv.getenv(o.MemberlistExtraKeysEnv))
			}
			return setupSpeaker(ctx, mgr, o, secrets)
		},
	})
}

// setupSpeaker joins the speakers' memberlist (unless o.Memberlist is
// off) and adds the layer-2 announcer and the BGP advertiser (which opens
// sessions only once BGPPeers select the node).
func setupSpeaker(ctx context.Context, mgr manager.Manager, o SpeakerOptions, secrets memberlistSecrets) error {
	log := mgr.GetLogger().WithName("speaker")
	// One cache of Services, endpoints' nodes and ServiceL2Statuses for
	// every reconciler of the speaker, as compact records (see
	// servicecache); /readyz waits for it too.
	services, err := servicecache.New(mgr.GetConfig(), servicecache.Options{StatusNamespace: o.Namespace, Log: log.WithName("servicecache")})
	if err == nil {
		err = mgr.Add(services)
	}
	if err == nil {
		err = mgr.AddReadyzCheck("service-cache", services.ReadyCheck)
	}
	if err != nil {
		return fmt.Errorf("setting up the service cache: %w", err)
	}
	// What a speaker that starts while the API server is away learns from
	// this one over memberlist, and this one from the others when it does.
	peers := l2announcer.NewPeerTable(l2announcer.PeerTableOptions{Log: log.WithName("layer2"), Reader: mgr.GetClient(),
		Services: services, Namespace: o.Namespace, Node: o.NodeName})
	// m and addr stay zero without memberlist.
	var m *membership.Membership
	var addr string
	if o.Memberlist {
		var err error
		if m, addr, err = startMemberlist(ctx, mgr, o, secrets, peers); err != nil {
			return err
		}
	} else {
		log.Info("memberlist is off (--memberlist=false): the API decides which speakers are alive (Ready nodes whose speaker renews its Lease); " +
			"a dead speaker on a Ready node keeps its addresses until its Lease expires (20s)")
	}
	shutdown := func() error {
		if m == nil {
			return nil
		}
		return m.Shutdown()
	}
	answerCtx, stopAnswering := context.WithCancel(context.Background())
	// BGP sessions close on stopping once layer 2 has handed over.
	handedOver := make(chan struct{})
	// Without memberlist, node readiness stands for the membership, and
	// Node changes (readiness among them) are the only membership changes.
	var members *l2announcer.MemberlistMembers
	var changes chan event.GenericEvent
	var alive l2announcer.Members = l2announcer.NodeReadiness{}
	if m != nil {
		members = &l2announcer.MemberlistMembers{Membership: m, Log: log, Self: o.NodeName}
		changes = make(chan event.GenericEvent, 1)
		alive = members
	}
	speakers := &heartbeat.Speakers{Reader: mgr.GetClient(), Namespace: o.Namespace}
	speakerOf := speakers.NodeOf
	if members != nil {
		// memberlist's metadata first: it knows speakers that joined
		// since the Leases were last read, and gone ones.
		speakerOf = func(mac net.HardwareAddr) (string, bool) {
			if node, ok := members.Speaker(mac); ok {
				return node, ok
			}
			return speakers.NodeOf(mac)
		}
	}
	// The responders report to the Reconciler that opens them (see
	// l2announcer.Network).
	network := &l2announcer.HostNetwork{Ctx: answerCtx, Log: log.WithName("layer2"),
		Options: layer2.Options{GratuitousInterval: o.GratuitousInterval, Speaker: speakerOf}}
	var tablePeers *l2announcer.PeerTable
	if m != nil {
		tablePeers = peers
	}
	observer, err := l2announcer.NewObserver(mgr, log.WithName("layer2"), o.NodeName, members, network, ctrlmetrics.Registry)
	if err != nil {
		stopAnswering()
		_ = shutdown()
		return err
	}
	r := &l2announcer.Reconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("barelb-speaker"), Log: log.WithName("layer2"),
		Node: o.NodeName, Namespace: o.Namespace, LBClass: o.LoadBalancerClass,
		Members: alive, Network: network, Services: services, Speakers: speakers, Peers: tablePeers,
		DrainOnCordon: o.DrainOnCordon, Observer: observer,
	}
	if m != nil {
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			keepSpeakerMetaCurrent(ctx, log, m, speakerMetaInterval, r.Planned)
			return nil
		})); err != nil {
			stopAnswering()
			_ = shutdown()
			return fmt.Errorf("setting up the memberlist metadata refresh: %w", err)
		}
	}
	bgpSessions := &bgpadvertiser.Sessions{}
	heartbeatWriter := &heartbeat.Writer{Client: mgr.GetClient(), Log: log.WithName("heartbeat"), Namespace: o.Namespace, Node: o.NodeName,
		State: func() heartbeat.State { return speakerState(members, bgpSessions) }}
	if err := mgr.Add(manager.RunnableFunc(heartbeatWriter.Start)); err != nil {
		stopAnswering()
		_ = shutdown()
		return fmt.Errorf("adding the speaker's Lease: %w", err)
	}
	err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		network.Watch(ctx, interfaceWatchInterval)
		return nil
	}))
	if err == nil {
		err = l2announcer.Setup(mgr, r, changes)
	}
	if err == nil {
		// The BGP router ID defaults to the address memberlist uses (the
		// node's InternalIP unless --memberlist-address says otherwise);
		// without memberlist, the advertiser looks the InternalIP up.
		routerID, _ := netip.ParseAddr(addr)
		err = bgpadvertiser.Setup(ctx, mgr, bgpadvertiser.Options{Services: services, Node: o.NodeName, Namespace: o.Namespace, LBClass: o.LoadBalancerClass,
			RouterID: routerID, Registerer: ctrlmetrics.Registry, StopAfter: handedOver, StopTimeout: o.HandOver + 5*time.Second,
			GracefulShutdown: o.BGPGracefulShutdown, RestartInPlace: o.RestartHold > 0,
			Sessions: bgpSessions})
	}
	if err == nil {
		err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			if !services.WaitForSync(ctx) {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(programPagesSettle):
			}
			// The heap's free pages go back after each burst whatever the
			// flag says (that is anonymous memory); the program's own
			// pages only with --release-startup-pages.
			startuppages.Run(ctx, startuppages.Options{Interval: o.ProgramPagesInterval, Settle: programPagesAfterBurst, FreeHeap: true,
				KeepProgram: !o.ReleaseStartupPages, Log: log})
			return nil
		}))
	}
	if err != nil {
		stopAnswering()
		_ = shutdown()
		return err
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if m != nil {
			go members.Forward(ctx, changes)
			joinMemberlist(ctx, mgr, o, m, addr)
		}
		<-ctx.Done()
		if m != nil && o.RestartHold > 0 {
			// A restart in place: the others keep this node elected
			// while it restarts, and nothing moves. The responders
			// answer until the process exits (after the BGP side's
			// graceful shutdown, if any): nobody else will.
			if err := m.Restart(o.RestartHold, time.Second); err != nil {
				log.Error(err, "telling the other speakers of the restart")
			}
			close(handedOver)
			return shutdown()
		}
		// Leave memberlist first, so that the others elect new
		// announcers at once, and keep answering until they have
		// announced. Without memberlist no other speaker learns that
		// this one stops (its node stays Ready); keep answering for the
		// hand-over anyway, which covers a node turning NotReady as it
		// shuts down. The responders stop announcing before the others
		// hear of it: an announcement after a successor's would move
		// the addresses back for the moment this one still answers.
		network.Leave()
		if m != nil {
			if err := m.Leave(time.Second); err != nil {
				log.Error(err, "leaving memberlist")
			}
		}
		time.Sleep(o.HandOver)
		stopAnswering()
		close(handedOver)
		return shutdown()
	}))
}

// memberlistSecrets are the memberlist secret and those also accepted.
type memberlistSecrets struct {
	primary string
	extra   []string
}

// memberlistSecretsFrom reads the secret and the extra secrets, one per
// line (blank lines and a line's surrounding white space ignored: a
// Secret edited by hand often ends in a newline).
func memberlistSecretsFrom(primary, extra string) memberlistSecrets {
	s := memberlistSecrets{primary: primary}
	for _, line := range strings.Split(extra, "\n") {
		if line = strings.TrimSpace(line); line != "" && line != primary && !slices.Contains(s.extra, line) {
			s.extra = append(s.extra, line)
		}
	}
	return s
}

// keys turns the secrets into memberlist keys: any secret makes a 256-bit
// key (its SHA-256), so the Secret may hold text. No secret, no keys.
func (s memberlistSecrets) keys() (key []byte, extra [][]byte) {
	if s.primary == "" {
		return nil, nil
	}
	sum := sha256.Sum256([]byte(s.primary))
	key = sum[:]
	for _, e := range s.extra {
		sum := sha256.Sum256([]byte(e))
		extra = append(extra, sum[:])
	}
	return key, extra
}

// startMemberlist starts this speaker's memberlist on its address (the
// node's InternalIP unless --memberlist-address), which it returns too.
func startMemberlist(ctx context.Context, mgr manager.Manager, o SpeakerOptions, secrets memberlistSecrets, state membership.JoinState) (*membership.Membership, string, error) {
	addr := o.MemberlistAddress
	if addr == "" {
		ip, err := speakerglue.NodeAddress(ctx, mgr.GetAPIReader(), o.NodeName)
		if err != nil {
			return nil, "", fmt.Errorf("finding this node's address for memberlist (or set --memberlist-address): %w", err)
		}
		addr = ip.String()
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		return nil, "", fmt.Errorf("--memberlist-address %q: %w", addr, err)
	}
	if len(secrets.extra) > 0 && secrets.primary == "" {
		return nil, "", fmt.Errorf("$%s holds memberlist secrets to accept besides the secret, but $%s, the secret, is empty", o.MemberlistExtraKeysEnv, o.MemberlistKeyEnv)
	}
	key, extra := secrets.keys()
	// The node's hardware addresses go to every speaker, which then tells
	// this one's answers on the LAN from a foreign host's.
	meta, err := hostSpeakerMeta(false) // not elected before its first plan
	if err != nil {
		mgr.GetLogger().WithName("speaker").Error(err, "reading this node's interfaces; other speakers will take its answers for a foreign host's")
	}
	m, err := membership.New(membership.Config{NodeName: o.NodeName, BindAddr: addr, BindPort: o.MemberlistPort, SecretKey: key, ExtraSecretKeys: extra,
		Logger: mgr.GetLogger().WithName("speaker"), Meta: meta,
		// A speaker that left answers on for its hand-over only; heard
		// after that, it is back where this one cannot hear it.
		LeftGrace: o.HandOver + leftGraceMargin, JoinState: state, NoEchoChecks: !o.MemberlistEcho})
	if err != nil {
		return nil, "", err
	}
	return m, addr, nil
}

// speakerStopMargin is what a stopping speaker may take past its
// hand-over and BGP graceful shutdown: closing the sessions and BFD,
// deleting its ServiceBGPStatuses.
const speakerStopMargin = 20 * time.Second

// speakerMetaInterval is how often the speaker re-reads its node's
// hardware addresses for its memberlist metadata: a NIC added or replaced
// while it runs is known to the other speakers within this.
const speakerMetaInterval = 30 * time.Second

// speakerState is what this speaker's Lease says: how its memberlist
// stands (members is nil without memberlist), its node's MACs and its
// established BGP sessions.
func speakerState(members *l2announcer.MemberlistMembers, sessions *bgpadvertiser.Sessions) heartbeat.State {
	st := heartbeat.State{Memberlist: heartbeat.MemberlistOff, BGPEstablished: sessions.Established()}
	if members != nil {
		st.Memberlist = heartbeat.MemberlistFallback
		if members.Formed() {
			st.Memberlist = heartbeat.MemberlistFormed
		}
	}
	if ifaces, err := layer2.HostInterfaces(); err == nil {
		st.MACs = l2announcer.SpeakerMACs(ifaces)
		st.Subnets = l2announcer.SpeakerSubnets(ifaces)
	}
	return st
}

// hostSpeakerMeta is this node's memberlist metadata: its interfaces'
// hardware addresses, and whether this speaker may be elected
// (l2announcer.SpeakerMeta).
func hostSpeakerMeta(ready bool) ([]byte, error) {
	ifaces, err := layer2.HostInterfaces()
	if err != nil {
		return nil, err
	}
	return l2announcer.SpeakerMeta(ifaces, membership.MaxMetaSize, ready), nil
}

// leftGraceMargin is how long past a leaving speaker's hand-over its
// answers on the LAN are still taken for the hand-over's.
const leftGraceMargin = 3 * time.Second

// speakerCacheSyncTimeout is how long the speaker's controllers wait for
// their caches to fill: as long as it takes.
const speakerCacheSyncTimeout = 365 * 24 * time.Hour

// readyCheckInterval is how often the speaker looks whether it has become
// ready to be elected (its first plan), to tell the others at once.
const readyCheckInterval = 100 * time.Millisecond

// keepSpeakerMetaCurrent updates m's metadata until ctx ends: when this
// node's hardware addresses have changed (read every interval), and as
// soon as ready's answer changes.
func keepSpeakerMetaCurrent(ctx context.Context, log logr.Logger, m *membership.Membership, interval time.Duration, ready func() bool) {
	ticker := time.NewTicker(min(interval, readyCheckInterval))
	defer ticker.Stop()
	var read time.Time
	var ifaces []layer2.Interface
	wasReady, slow := false, false
	// Ready never turns back: once it is told, only the hardware
	// addresses are looked at, every interval.
	slowDown := func() {
		if wasReady && !slow {
			slow = true
			ticker.Reset(interval)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		isReady := ready()
		if time.Since(read) < interval && isReady == wasReady {
			continue
		}
		if time.Since(read) >= interval || ifaces == nil {
			var err error
			if ifaces, err = layer2.HostInterfaces(); err != nil {
				log.V(1).Info("Reading this node's interfaces for the memberlist metadata failed", "error", err.Error())
				continue
			}
			read = time.Now()
		}
		meta := l2announcer.SpeakerMeta(ifaces, membership.MaxMetaSize, isReady)
		if bytes.Equal(meta, m.Meta()) {
			wasReady = isReady
			slowDown()
			continue
		}
		if err := m.SetMeta(meta, time.Second); err != nil {
			log.Error(err, "Telling the other speakers this node's new hardware addresses or readiness")
			continue
		}
		if isReady != wasReady {
			log.Info("This speaker has read the cluster and planned; the others may elect it now")
		} else {
			log.Info("This node's hardware addresses changed; the other speakers know them now")
		}
		wasReady = isReady
		slowDown()
	}
}

// joinMemberlist joins the other nodes' speakers, listed from the API's
// Nodes (until the API answers); memberlist retries in the background
// when none answers.
func joinMemberlist(ctx context.Context, mgr manager.Manager, o SpeakerOptions, m *membership.Membership, addr string) {
	log := mgr.GetLogger().WithName("speaker")
	self, _ := netip.ParseAddr(addr) // checked by startMemberlist
	// While the API server is away the peers cannot be listed; the others
	// join this speaker meanwhile (each retries the peers it knows).
	for wait := time.Second; ; wait = min(2*wait, peersRetryMax) {
		lctx, cancel := context.WithTimeout(ctx, peersListTimeout)
		peers, err := l2announcer.Peers(lctx, mgr.GetAPIReader(), o.NodeName, self, o.MemberlistPort)
		cancel()
		if err == nil {
			if _, err := m.Join(ctx, peers); err != nil && ctx.Err() == nil {
				log.Error(err, "joining memberlist; retrying in the background", "peers", peers)
			}
			return
		}
		log.Error(err, "finding memberlist peers; trying again", "in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// peersRetryMax is the longest wait between two attempts to list the
// memberlist peers from the API, and peersListTimeout how long one may
// take (a hung API server holds a request for ever).
const (
	peersRetryMax    = 30 * time.Second
	peersListTimeout = 10 * time.Second
)
