package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ResponderCounts are the counters of one interface's ARP/NDP responder,
// read when /metrics is scraped.
type ResponderCounts struct {
	Interface                                             string
	ARPRequests, ARPAnswers, NDPSolicitations, NDPAnswers uint64
	Gratuitous, Conflicts                                 uint64
}

// Speaker holds the speaker's metrics.
type Speaker struct {
	// AddressesAnnounced counts the addresses this node answers for.
	AddressesAnnounced prometheus.Gauge
	// MemberlistMembers counts the live speakers memberlist sees, this one
	// included.
	MemberlistMembers prometheus.Gauge
	// MembershipFallback is 1 while memberlist has not formed and node
	// readiness stands in for it.
	MembershipFallback prometheus.Gauge
	// MemberlistEnabled is 1 when the speaker runs memberlist and 0 when
	// it was started with --memberlist=false and node readiness alone
	// tells live speakers.
	MemberlistEnabled prometheus.Gauge
	// KernelAnswersARP counts the assigned IPv4 addresses the kernel of
	// this node answers ARP for by itself (an address on a local interface,
	// kube-ipvs0 or lo, with arp_ignore 0): every such node answers, split
	// brain. kube-proxy's IPVS mode without strictARP causes it.
	KernelAnswersARP prometheus.Gauge
	// PartitionedSpeakers counts the speakers heard answering on the LAN
	// for addresses this one announces although memberlist has lost them
	// (the gossip between them is cut): 0 on a healthy cluster.
	PartitionedSpeakers prometheus.Gauge
	// AddressContests counts the addresses contested with such a speaker,
	// by outcome: kept (this node answers on) or yielded (it stopped).
	AddressContests *prometheus.CounterVec

	responders *responderCollector
}

// NewSpeaker makes the speaker's metrics and registers them on reg;
// responders reads the layer-2 responders' counters at scrape time (nil:
// none).
func NewSpeaker(reg prometheus.Registerer, responders func() []ResponderCounts) (*Speaker, error) {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "barelb", Subsystem: "speaker", Name: name, Help: help})
	}
	m := &Speaker{
		AddressesAnnounced: gauge("addresses_announced", "Addresses (VIPs) this node answers ARP/NDP for."),
		MemberlistMembers:  gauge("memberlist_members", "Live speakers in memberlist as this speaker sees them, itself included."),
		MembershipFallback: gauge("membership_fallback", "1 while memberlist has not formed and node readiness from the API decides which speakers are alive, which cannot see a dead speaker on a Ready node."),
		MemberlistEnabled:  gauge("memberlist_enabled", "1 when this speaker runs memberlist; 0 when it was started with --memberlist=false and node readiness from the API alone decides which speakers are alive."),
		KernelAnswersARP: gauge("kernel_answers_arp",
			"Assigned IPv4 addresses configured on a local interface (kube-ipvs0, lo, ...) that this node's kernel answers ARP for "+
				"because arp_ignore is 0 on the LAN interface: every such node answers, split brain. "+
				"Set kube-proxy's ipvs.strictARP: true (or net.ipv4.conf.all.arp_ignore=1 and arp_announce=2)."),
		PartitionedSpeakers: gauge("partitioned_speakers",
			"Speakers heard on the LAN answering for addresses this speaker announces although memberlist has lost them: "+
				"the memberlist gossip between the nodes is cut (firewall, wrong memberlist secret) while the LAN is up. "+
				"Each such address is kept by one of the two, the other stops answering it."),
		AddressContests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "barelb", Subsystem: "speaker", Name: "address_contests_total",
			Help: "Addresses this speaker found answered by a speaker memberlist has lost, by outcome: kept (this node answers on) or yielded (it stopped answering)."},
			[]string{"outcome"}),
		responders: newResponderCollector(),
	}
	var err error
	if m.PartitionedSpeakers, err = register(reg, m.PartitionedSpeakers); err != nil {
		return nil, err
	}
	if m.AddressContests, err = register(reg, m.AddressContests); err != nil {
		return nil, err
	}
	if m.AddressesAnnounced, err = register(reg, m.AddressesAnnounced); err != nil {
		return nil, err
	}
	if m.MemberlistMembers, err = register(reg, m.MemberlistMembers); err != nil {
		return nil, err
	}
	if m.MembershipFallback, err = register(reg, m.MembershipFallback); err != nil {
		return nil, err
	}
	if m.MemberlistEnabled, err = register(reg, m.MemberlistEnabled); err != nil {
		return nil, err
	}
	if m.KernelAnswersARP, err = register(reg, m.KernelAnswersARP); err != nil {
		return nil, err
	}
	if m.responders, err = register(reg, m.responders); err != nil {
		return nil, err
	}
	// Set on the collector the registry serves, which is an earlier
	// speaker's when this process started one before (tests do).
	m.responders.setSource(responders)
	return m, nil
}

// SetBool sets g to 1 or 0.
func SetBool(g prometheus.Gauge, v bool) {
	if v {
		g.Set(1)
		return
	}
	g.Set(0)
}

// responderCollector turns the responders' own atomic counters into
// counters labelled by interface, read at scrape time, so that the hot
// path of answering stays free of Prometheus.
type responderCollector struct {
	descs []responderDesc

	mu     sync.Mutex
	source func() []ResponderCounts
}

type responderDesc struct {
	desc  *prometheus.Desc
	value func(ResponderCounts) uint64
}

func newResponderCollector() *responderCollector {
	d := func(name, help string, value func(ResponderCounts) uint64) responderDesc {
		return responderDesc{
			desc:  prometheus.NewDesc(prometheus.BuildFQName("barelb", "speaker", name), help, []string{"interface"}, nil),
			value: value,
		}
	}
	return &responderCollector{descs: []responderDesc{
		d("arp_requests_received_total", "ARP requests received, for any address.", func(c ResponderCounts) uint64 { return c.ARPRequests }),
		d("arp_answers_sent_total", "ARP replies sent for announced addresses.", func(c ResponderCounts) uint64 { return c.ARPAnswers }),
		d("ndp_solicitations_received_total", "IPv6 neighbor solicitations received, for any address.", func(c ResponderCounts) uint64 { return c.NDPSolicitations }),
		d("ndp_answers_sent_total", "IPv6 neighbor advertisements sent in answer for announced addresses.", func(c ResponderCounts) uint64 { return c.NDPAnswers }),
		d("gratuitous_sent_total", "Gratuitous ARP and unsolicited neighbor advertisements sent.", func(c ResponderCounts) uint64 { return c.Gratuitous }),
		d("conflicts_total", "Announced addresses found in use by another host on the link.", func(c ResponderCounts) uint64 { return c.Conflicts }),
	}}
}

func (c *responderCollector) setSource(source func() []ResponderCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.source = source
}

// Describe sends the descriptors of the responder counters.
func (c *responderCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.desc
	}
}

// Collect reads every responder's counters.
func (c *responderCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	source := c.source
	c.mu.Unlock()
	if source == nil {
		return
	}
	for _, counts := range source() {
		for _, d := range c.descs {
			ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.value(counts)), counts.Interface)
		}
	}
}
