package membership

import (
	"errors"
	"fmt"
	"time"
)

// Timing holds the failure-detector and gossip knobs. A zero field takes its
// value from LANTiming, so Timing{} means "the LAN defaults".
//
// For clusters of up to 10 members memberlist suspects a silent member for
// S = SuspicionMult × ProbeInterval before declaring it dead; above that S
// grows with log10(members). With SuspicionMult > 2 and at least
// SuspicionMult members (counting those dead within GossipToTheDeadTime),
// S only holds once SuspicionMult-2 other members confirm the suspicion;
// unconfirmed it is up to SuspicionMaxTimeoutMult × S.
// Detection of a crashed member is therefore about
//
//	up to ProbeInterval (until someone probes it) + ProbeInterval (the
//	failed probe) + S + a GossipInterval or two.
type Timing struct {
	// ProbeInterval is how often each member probes one other member.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct UDP probe waits for its ack before
	// indirect probes (through other members) and a TCP probe are tried for
	// the rest of the ProbeInterval. Must be below ProbeInterval.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a member stays suspect (and may refute)
	// before it is declared dead; see the type comment.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds an unconfirmed suspicion when
	// SuspicionMult > 2 and there are at least SuspicionMult members: the
	// timeout starts at this multiple and shrinks as others confirm.
	SuspicionMaxTimeoutMult int
	// GossipInterval is how often queued updates (suspect, dead, alive,
	// leave) are sent to a few random members. Idle members send nothing.
	GossipInterval time.Duration
	// PushPullInterval is how often a member syncs its full state with one
	// random member over TCP (anti-entropy for lost gossip).
	PushPullInterval time.Duration
	// GossipToTheDeadTime is how long updates are still sent to a member
	// declared dead, giving a wrongly declared member the chance to refute;
	// dead members are forgotten after it.
	GossipToTheDeadTime time.Duration
	// TCPTimeout bounds a TCP connect and a push/pull exchange (Join).
	TCPTimeout time.Duration
	// DeadNodeReclaimTime is how long after being declared dead a member's
	// name may come back from a different address (a node whose IP changed).
	DeadNodeReclaimTime time.Duration
	// RejoinInterval is the slowest pace at which Join retries its peers:
	// retries start fast and back off to it while no other member is known,
	// then continue at it for peers that are not members (partition repair).
	RejoinInterval time.Duration
}

// LANTiming returns timing for a switched LAN: a SIGKILLed speaker is
// declared dead in about a second, and two busy cores do not make a healthy
// one flap. BenchmarkDetection and TestNoFlapping measure both; the numbers
// below are from a 2-core machine that other builds kept at a load average
// of 2-9, members on 127.0.0.1.
//
// The one real trade-off is SuspicionMult. Detection (BenchmarkDetection,
// 20 kills; 3 members / a pair), and soaks with 4 spinning goroutines in
// the members' own process:
//
//	SuspicionMult 2: median 745 / 852 ms, worst 932 / 988 ms;
//	                 4 of 9 20 s soaks flapped; 3 min: 3 members
//	                 declared dead after stalls of 242-722 ms
//	SuspicionMult 3: median 946 / 1045 ms, worst 1187 / 1168 ms;
//	                 1 of 8 20 s soaks flapped; 3 min: none (stalls up to
//	                 360 ms); 10 min: 3 changes, all in one 17 s burst of
//	                 outside load, after stalls of 417 ms, 1.06 s, 1.17 s
//
// No setting that detects a crash in about a second can survive a process
// that gets no CPU for a second: it is indistinguishable from a dead one.
//
// A false "dead" moves every address of a healthy node away and back, and
// every connection through them with it, while a slower detection only
// lengthens a real outage by 200 ms: we take 3. Faster probing does not buy
// the time back: ProbeInterval 100 ms with SuspicionMult 4 (the same 400 ms
// to refute) doubled the false suspicions and flapped in 3 of 3 soaks.
//
// The fast path (see the package documentation) leaves all of this as it
// is and takes its evidence from the kernel instead: a SIGKILLed member
// is dropped as soon as one probe's TCP fallback is refused, a node cut
// off as soon as one probe's two SYNs go unanswered for the rest of the
// probe interval (and the other members have checked with a 60 ms connect
// of their own). Detection is then about
//
//	until the first probe of it (about ProbeInterval with two or more
//	survivors, at worst (members-1) × ProbeInterval) + ProbeTimeout (the
//	UDP ping) + 0 (refused) or ProbeInterval-ProbeTimeout (unanswered
//	SYNs) [+ ~60 ms for a member that heard it from another]
//
// Measured on the same 2-core machine, at a load average of 20-35 from
// other work (BenchmarkDetection, 20 failures each): SIGKILL, 3 members:
// median 268 ms, worst 616 ms (was 946 / 1187 ms); a pair: 337 / 453 ms
// (was 1045 / 1168 ms); a node whose packets are all dropped, 3 members:
// 408 / 766 ms. End to end in the lab (e2etest/layer2, 20 rounds, both
// families: until the client's neighbour entry names the new node):
// SIGKILL median 181-282 ms, worst 386-682 ms over three runs (was 764 /
// 1103 ms); LAN link down median 375-401 ms, worst 604-777 ms over two
// runs (was 0.86-1.09 s).
//
// Since then the watch streams and the echo checks (docs/design/
// membership.md) tell the fast path when to look, without waiting for a
// probe: SIGKILL, 3 members: median 1 ms, worst 2 ms (TestFastPathKill);
// a node whose packets are all dropped: median 113 ms, worst 115 ms
// (TestFastPathUnreachable, 5 cuts, quiet machine).
func LANTiming() Timing {
	return Timing{
		// 200 ms (memberlist default 1 s): detection is a few probe
		// intervals, so this sets the pace. Cost: per member, one probe
		// and ack per interval plus indirect probes when one fails.
		ProbeInterval: 200 * time.Millisecond,
		// 100 ms (default 500 ms): a LAN RTT is well under 1 ms, so this
		// only expires on a dead or starved process; the indirect and TCP
		// probes still get the rest of the ProbeInterval, which is the
		// deadline for any ack, before a suspicion.
		ProbeTimeout: 100 * time.Millisecond,
		// 3 (default 4): a suspect gets 3 × 200 ms = 600 ms to refute
		// (×log10(members) above 10 members); see above.
		SuspicionMult: 3,
		// 2 (default 6): with SuspicionMult 3 and 3+ members memberlist
		// waits for one other member to confirm a suspicion, and until
		// then up to this multiple of the 600 ms. Members it still counts
		// include those dead in the last GossipToTheDeadTime, so a pair
		// that lost a third member can never confirm: 2 bounds that case
		// at 1.2 s instead of 3.6 s.
		SuspicionMaxTimeoutMult: 2,
		// 50 ms (default 200 ms): suspect, dead, refute and leave messages
		// spread in one or two rounds; nothing is sent while idle.
		GossipInterval: 50 * time.Millisecond,
		// 10 s (default 30 s): anti-entropy; a missed update heals within
		// seconds. One small TCP exchange per member per interval.
		PushPullInterval: 10 * time.Second,
		// 30 s (default): a wrongly declared member keeps hearing about it
		// and refutes; dead members are forgotten after it.
		GossipToTheDeadTime: 30 * time.Second,
		// 2 s (default 10 s): LAN connects take under a millisecond; a
		// peer that does not answer in 2 s should not hold up Join.
		TCPTimeout: 2 * time.Second,
		// 1 ns (default 0 = never): a node that comes back with a new
		// address takes its name back as soon as its old self is declared
		// dead. Names are Kubernetes node names, so the only claimant is
		// that node itself. (Back on a new address before the old one is
		// declared dead, it is accepted at the next push/pull.)
		DeadNodeReclaimTime: time.Nanosecond,
		// 10 s: a healed partition is merged within this.
		RejoinInterval: 10 * time.Second,
	}
}

// withDefaults fills zero fields from LANTiming.
func (t Timing) withDefaults() Timing {
	d := LANTiming()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&t.ProbeInterval, d.ProbeInterval)
	setDur(&t.ProbeTimeout, d.ProbeTimeout)
	setDur(&t.GossipInterval, d.GossipInterval)
	setDur(&t.PushPullInterval, d.PushPullInterval)
	setDur(&t.GossipToTheDeadTime, d.GossipToTheDeadTime)
	setDur(&t.TCPTimeout, d.TCPTimeout)
	setDur(&t.DeadNodeReclaimTime, d.DeadNodeReclaimTime)
	setDur(&t.RejoinInterval, d.RejoinInterval)
	if t.SuspicionMult == 0 {
		t.SuspicionMult = d.SuspicionMult
	}
	if t.SuspicionMaxTimeoutMult == 0 {
		t.SuspicionMaxTimeoutMult = d.SuspicionMaxTimeoutMult
	}
	return t
}

func (t Timing) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", t.ProbeInterval},
		{"ProbeTimeout", t.ProbeTimeout},
		{"GossipInterval", t.GossipInterval},
		{"PushPullInterval", t.PushPullInterval},
		{"GossipToTheDeadTime", t.GossipToTheDeadTime},
		{"TCPTimeout", t.TCPTimeout},
		{"DeadNodeReclaimTime", t.DeadNodeReclaimTime},
		{"RejoinInterval", t.RejoinInterval},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", f.name, f.v))
		}
	}
	if t.ProbeTimeout >= t.ProbeInterval {
		errs = append(errs, fmt.Errorf("ProbeTimeout %v must be below ProbeInterval %v", t.ProbeTimeout, t.ProbeInterval))
	}
	if t.SuspicionMult < 1 {
		errs = append(errs, fmt.Errorf("SuspicionMult %d must be at least 1", t.SuspicionMult))
	}
	if t.SuspicionMaxTimeoutMult < 1 {
		errs = append(errs, fmt.Errorf("SuspicionMaxTimeoutMult %d must be at least 1", t.SuspicionMaxTimeoutMult))
	}
	return errors.Join(errs...)
}
