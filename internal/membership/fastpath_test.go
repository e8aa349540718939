package membership

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/barelb/barelb/internal/testutil"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/hashicorp/memberlist"
	"golang.org/x/net/icmp"
)

// markLog records the fast path's log lines of the members it is given to.
type markLog struct {
	mu     sync.Mutex
	downs  []string // the log lines of marks
	clears []string // the log lines of cleared marks
}

func (l *markLog) logger(name string) *logr.Logger {
	tee := testLogger(name)
	lg := funcr.New(func(prefix, args string) {
		l.mu.Lock()
		switch {
		case strings.Contains(args, "Member down (kernel-level evidence)"):
			l.downs = append(l.downs, name+": "+args)
		case strings.Contains(args, "Member mark cleared"):
			l.clears = append(l.clears, name+": "+args)
		}
		l.mu.Unlock()
		if tee.Enabled() {
			tee.Info(args, "prefix", prefix)
		}
	}, funcr.Options{Verbosity: 0})
	return &lg
}

func (l *markLog) counts() (downs, fromHint, clears int) {
	return l.countSource(""), l.countSource("hint from"), len(l.clears)
}

// countSource counts the marks whose source starts with source.
func (l *markLog) countSource(source string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, d := range l.downs {
		if strings.Contains(d, `"source"="`+source) {
			n++
		}
	}
	return n
}

// lines returns copies of the recorded lines.
func (l *markLog) lines() (downs, clears []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.downs), slices.Clone(l.clears)
}

// settle waits up to a second for cond over the recorded lines. The fast
// path logs a mark or a clear just after the member list changes, so a
// test that has just seen the change may read the lines a moment early.
func (l *markLog) settle(cond func(downs, clears []string) bool) {
	deadline := time.Now().Add(time.Second)
	for !cond(l.lines()) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *markLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.downs, l.clears = nil, nil
}

// TestFastPathKill: a SIGKILLed member is marked down on kernel-level
// evidence (its kernel refuses the probe's TCP fallback), and the down hint
// makes the other survivor mark it too, after its own check.
func TestFastPathKill(t *testing.T) {
	reps := 6
	if testing.Short() {
		reps = 3
	}
	var ml markLog
	a, pa := startMember(t, "a", memberOpts{logger: ml.logger("a")})
	b, _ := startMember(t, "b", memberOpts{logger: ml.logger("b")})
	join(t, b, pa)
	port := freePort(t)
	var ds []time.Duration
	for i := range reps {
		d := detect(t, []*Membership{a, b}, pa, "victim", port)
		ds = append(ds, d)
		if d > 5*time.Second {
			t.Errorf("kill %d: dropped after %v, want < 5s", i, d)
		}
	}
	ml.settle(func(downs, _ []string) bool { return len(downs) >= reps })
	downs, fromHint, _ := ml.counts()
	fromWatch := ml.countSource("watch")
	t.Logf("SIGKILL detection over %d kills: median %v, worst %v, all %v; %d marks, %d of them when a watch stream ended, %d after a hint",
		reps, median(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond), roundAll(ds), downs, fromWatch, fromHint)
	// Each kill is seen by both survivors unless memberlist gets there
	// first on a loaded machine; most must be the fast path's, and each
	// kill must end the survivors' watch streams to the victim.
	lines, _ := ml.lines()
	if downs < reps {
		t.Errorf("%d kill-evidence marks over %d kills by 2 survivors, want at least %d: %v", downs, reps, reps, lines)
	}
	if fromWatch < reps {
		t.Errorf("%d marks when a watch stream ended over %d kills, want at least %d: %v", fromWatch, reps, reps, lines)
	}
}

// TestFastPathStall: a member that is alive but gets no CPU (SIGSTOP) for
// less than memberlist's suspicion window is never marked down: its kernel
// still completes the TCP handshake. memberlist may suspect it, and it
// refutes once it runs again.
func TestFastPathStall(t *testing.T) {
	reps := 5
	if testing.Short() {
		reps = 2
	}
	var ml markLog
	a, pa := startMember(t, "a", memberOpts{logger: ml.logger("a")})
	b, _ := startMember(t, "b", memberOpts{logger: ml.logger("b")})
	join(t, b, pa)
	c := startChild(t, "c", freePort(t), pa)
	ms := []*Membership{a, b}
	for i := range reps {
		testutil.Eventually(t, 30*time.Second, "a and b list c and are healthy", healthy(ms, "a", "b", "c"))
		stall := 500*time.Millisecond + rand.N(100*time.Millisecond)
		if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		dropped := false
		end := time.Now().Add(stall)
		for time.Now().Before(end) {
			dropped = dropped || !lists(a, "c") || !lists(b, "c")
			time.Sleep(time.Millisecond)
		}
		if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		// Watch for a while after: a late verdict would show now.
		end = time.Now().Add(time.Second)
		for time.Now().Before(end) {
			dropped = dropped || !lists(a, "c") || !lists(b, "c")
			time.Sleep(time.Millisecond)
		}
		t.Logf("stall %d of %v: dropped by memberlist or the fast path: %v", i, stall.Round(time.Millisecond), dropped)
	}
	if downs, _ := ml.lines(); len(downs) > 0 {
		t.Errorf("a stalled but live member was marked down: %v", downs)
	}
}

// TestFastPathHintAboutLiveMember: a hint about a member that answers is
// not believed.
func TestFastPathHintAboutLiveMember(t *testing.T) {
	var ml markLog
	a, pa := startMember(t, "a", memberOpts{logger: ml.logger("a")})
	b, _ := startMember(t, "b", memberOpts{logger: ml.logger("b")})
	join(t, b, pa)
	testutil.Eventually(t, 15*time.Second, "a and b see each other", sees([]*Membership{a, b}, "a", "b"))
	delegate{fp: b.fast}.NotifyMsg(encodeHint("a", "liar"))
	b.fast.verify("a", "liar") // the same, synchronously
	time.Sleep(100 * time.Millisecond)
	if downs, _ := ml.lines(); len(downs) > 0 || !lists(b, "a") {
		t.Errorf("b believed a hint about live a: %v, members %v", downs, b.Members())
	}
	// Malformed messages are ignored.
	for _, msg := range []string{"", "barelb/down\x00", "other", hintPrefix + "\x00x"} {
		delegate{fp: b.fast}.NotifyMsg([]byte(msg))
	}
}

// TestFastPathMarkClears: a mark on a member that answers memberlist's
// next ping is cleared, and Changes fires both times.
func TestFastPathMarkClears(t *testing.T) {
	var ml markLog
	a, pa := startMember(t, "a", memberOpts{logger: ml.logger("a")})
	b, pb := startMember(t, "b", memberOpts{logger: ml.logger("b")})
	join(t, b, pa)
	testutil.Eventually(t, 15*time.Second, "a and b see each other", sees([]*Membership{a, b}, "a", "b"))
	drain(a.Changes())
	a.fast.mark("b", netip.MustParseAddrPort(addr(pb)), "test", "test", false)
	if lists(a, "b") {
		t.Fatalf("a still lists marked b: %v", a.Members())
	}
	select {
	case <-a.Changes():
	default:
		t.Error("no Changes signal for the mark")
	}
	took := elapsedUntil(t, 10*time.Second, "a lists b again", func() bool { return lists(a, "b") })
	t.Logf("mark cleared after %v", took.Round(time.Millisecond))
	// The signal follows the list's change: a test polling the list may
	// see the change a moment before it.
	select {
	case <-a.Changes():
	case <-time.After(time.Second):
		t.Error("no Changes signal for the cleared mark")
	}
	ml.settle(func(_, clears []string) bool { return len(clears) > 0 })
	if _, clears := ml.lines(); len(clears) != 1 || !strings.Contains(clears[0], "acked a ping") {
		t.Errorf("clears %v, want one after an acked ping", clears)
	}
	// A mark about something that is not a member's address is ignored.
	a.fast.mark("b", netip.MustParseAddrPort(addr(pb+1)), "test", "test", false)
	a.fast.mark("nobody", netip.MustParseAddrPort(addr(pb)), "test", "test", false)
	a.fast.mark("a", netip.MustParseAddrPort(addr(pa)), "test", "test", false)
	if ok, _ := sees([]*Membership{a}, "a", "b")(); !ok {
		t.Errorf("a sees %v after marks that do not apply, want a, b", a.Members())
	}
}

// TestFastPathRestart: a killed member restarted at once on the same
// address is listed again (the mark clears when it answers).
func TestFastPathRestart(t *testing.T) {
	var ml markLog
	a, pa := startMember(t, "a", memberOpts{logger: ml.logger("a")})
	b, _ := startMember(t, "b", memberOpts{logger: ml.logger("b")})
	join(t, b, pa)
	port := freePort(t)
	c := startChild(t, "c", port, pa)
	ms := []*Membership{a, b}
	testutil.Eventually(t, 15*time.Second, "a and b list c", sees(ms, "a", "b", "c"))
	c.kill()
	testutil.Eventually(t, 15*time.Second, "a and b drop c", sees(ms, "a", "b"))
	startChild(t, "c", port, pa)
	testutil.Eventually(t, 15*time.Second, "a and b list c again", sees(ms, "a", "b", "c"))
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		if ok, _ := sees(ms, "a", "b", "c")(); !ok {
			t.Fatalf("restarted c dropped: a %v, b %v", a.Members(), b.Members())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHintCoding(t *testing.T) {
	name, from, ok := decodeHint(encodeHint("node-1", "node-2"))
	if !ok || name != "node-1" || from != "node-2" {
		t.Errorf("decode(encode) = %q, %q, %v", name, from, ok)
	}
}

// Unreachable members need a network of their own: the survivors run in a
// re-executed test process inside one network namespace, the victim in
// another behind a veth pair, and the victim's namespace drops every
// packet (iptables) to cut it off.
const (
	netnsEnv    = "BARELB_MEMBERSHIP_NETNS" // the victim's namespace, set in the inner process
	netnsRepEnv = "BARELB_MEMBERSHIP_REPS"
	survivorIP  = "198.51.100.1"
	victimIP    = "198.51.100.2"
)

// cutDetections runs reps cut-offs in namespaces and returns how long each
// took until both survivors dropped the victim.
func cutDetections(tb testing.TB, reps int) []time.Duration {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root for network namespaces")
	}
	for _, p := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(p); err != nil {
			tb.Skipf("needs %s", p)
		}
	}
	prefix := fmt.Sprintf("blfd%d", os.Getpid())
	nsS, nsV := prefix+"s", prefix+"v"
	run := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tb.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", nsS).Run()
		_ = exec.Command("ip", "netns", "del", nsV).Run()
	})
	run("ip", "netns", "add", nsS)
	run("ip", "netns", "add", nsV)
	run("ip", "-n", nsS, "link", "add", "s0", "type", "veth", "peer", "name", "v0", "netns", nsV)
	run("ip", "-n", nsS, "addr", "add", survivorIP+"/24", "dev", "s0")
	run("ip", "-n", nsV, "addr", "add", victimIP+"/24", "dev", "v0")
	for _, ns := range []string{nsS, nsV} {
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "-n", nsS, "link", "set", "s0", "up")
	run("ip", "-n", nsV, "link", "set", "v0", "up")

	cmd := exec.Command("ip", "netns", "exec", nsS, os.Args[0], "-test.run=^TestFastPathUnreachable$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsEnv+"="+nsV, netnsRepEnv+"="+strconv.Itoa(reps))
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("inner run: %v\n%s", err, out)
	}
	var ds []time.Duration
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "CUT-DETECTION "); ok {
			d, err := time.ParseDuration(rest)
			if err != nil {
				tb.Fatalf("inner run: %q: %v", line, err)
			}
			ds = append(ds, d)
		}
	}
	if len(ds) != reps {
		tb.Fatalf("inner run reported %d detections, want %d:\n%s", len(ds), reps, out)
	}
	if testing.Verbose() {
		tb.Logf("inner run:\n%s", out)
	}
	return ds
}

// TestFastPathUnreachable: a member whose node stops answering anything is
// marked down on unanswered SYNs, by both survivors.
func TestFastPathUnreachable(t *testing.T) {
	nsV := os.Getenv(netnsEnv)
	if nsV == "" {
		reps := 5
		if testing.Short() {
			reps = 2
		}
		ds := cutDetections(t, reps)
		t.Logf("cut-off detection over %d cuts: median %v, worst %v, all %v",
			reps, median(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond), roundAll(ds))
		return
	}
	reps, _ := strconv.Atoi(os.Getenv(netnsRepEnv))
	var ml markLog
	a, _ := startMember(t, "a", memberOpts{bind: survivorIP, port: 7946, logger: ml.logger("a")})
	b, _ := startMember(t, "b", memberOpts{bind: survivorIP, port: 7947, logger: ml.logger("b")})
	seed := survivorIP + ":7946"
	if _, err := b.Join(context.Background(), []string{seed}); err != nil {
		t.Fatal(err)
	}
	ms := []*Membership{a, b}
	ipt := func(op string) {
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			args := []string{"netns", "exec", nsV, "iptables", op, chain, "-j", "DROP"}
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("iptables %s %s: %v\n%s", op, chain, err, out)
			}
		}
	}
	for i := range reps {
		c := startChildAt(t, childOpts{name: "victim", bind: victimIP, port: 7950, seed: seed, netns: nsV})
		testutil.Eventually(t, 30*time.Second, "survivors list the victim and are healthy", healthy(ms, "a", "b", "victim"))
		ml.reset()
		time.Sleep(rand.N(testTiming(t).ProbeInterval))
		ipt("-I")
		d := elapsedUntil(t, 30*time.Second, "survivors drop the victim", func() bool { ok, _ := sees(ms, "a", "b")(); return ok })
		ml.settle(func(downs, _ []string) bool { return len(downs) > 0 })
		downs, fromHint, _ := ml.counts()
		fromEcho := ml.countSource("echo silence")
		fmt.Printf("CUT-DETECTION %v\n", d)
		t.Logf("cut %d: dropped by both after %v; %d marks, %d after a hint, %d after echo silence", i, d.Round(time.Millisecond), downs, fromHint, fromEcho)
		if downs == 0 {
			t.Errorf("cut %d: no survivor marked the victim on unanswered SYNs", i)
		}
		// The survivors ping the victim's node: its silence is what
		// prompts the check, before a probe would.
		if fromEcho == 0 {
			t.Errorf("cut %d: no survivor checked the victim after its echoes went unanswered", i)
		}
		if d > 5*time.Second {
			t.Errorf("cut %d: dropped after %v, want < 5s", i, d)
		}
		c.kill()
		ipt("-D")
		// Let memberlist declare the old victim dead before the next one.
		time.Sleep(2 * time.Second)
	}
}

func TestKernelUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		// answeredAgo is how long ago the node last answered an echo
		// (negative: never).
		answeredAgo time.Duration
		pinged      bool
		mark        *mark
		want        bool
	}{
		{"answered just now", 5 * time.Millisecond, true, nil, true},
		{"silent longer than kernelUpWithin", kernelUpWithin + 5*time.Millisecond, true, nil, false},
		{"never answered (ICMP filtered)", -1, true, nil, false},
		{"not pinged (not watched)", 5 * time.Millisecond, false, nil, false},
		{"marked on unanswered SYNs, kernel up: a firewall", 5 * time.Millisecond, true, &mark{why: "2 SYNs unanswered"}, true},
		{"marked on a refused connect: its speaker is gone", 5 * time.Millisecond, true, &mark{why: "connection refused", refused: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp := newFastPath("a", testLogger("a"), testTiming(t), false, func() {})
			if tc.pinged {
				target := &echoTarget{addr: netip.MustParseAddr("192.0.2.2")}
				if tc.answeredAgo >= 0 {
					target.answered = time.Now().Add(-tc.answeredAgo)
				}
				fp.echo.targets["b"] = target
			}
			if tc.mark != nil {
				tc.mark.timer = time.AfterFunc(time.Hour, func() {})
				defer tc.mark.timer.Stop()
				fp.marks["b"] = tc.mark
			}
			if got := fp.kernelUp("b"); got != tc.want {
				t.Errorf("kernelUp = %v, want %v", got, tc.want)
			}
		})
	}
}

// A member memberlist drops is still pinged for echoLinger, unjudged, so
// that whether its kernel is up can be asked right then.
func TestEchoTargetsLinger(t *testing.T) {
	self := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddrPort("192.0.2.2:7946")
	e := &echoer{targets: map[string]*echoTarget{}}
	e.update(self, map[string]netip.AddrPort{"b": b})
	e.targets["b"].answered = time.Now()
	e.update(self, map[string]netip.AddrPort{})
	if tg := e.targets["b"]; tg == nil || tg.lingerUntil.IsZero() {
		t.Fatalf("b, no longer watched, is not lingering: %+v", tg)
	}
	if !e.answeredWithin("b", kernelUpWithin, time.Now()) {
		t.Error("a lingering member's last answer is forgotten")
	}
	e.judge(time.Now().Add(time.Hour)) // silent for an hour, but not judged
	if e.targets["b"].checking {
		t.Error("a lingering member was judged")
	}
	e.update(self, map[string]netip.AddrPort{"b": b})
	if !e.targets["b"].lingerUntil.IsZero() {
		t.Error("b, watched again, still lingers")
	}
	e.update(self, map[string]netip.AddrPort{})
	e.prune(time.Now().Add(echoLinger + time.Second))
	if e.targets["b"] != nil {
		t.Error("a lingering member outlived echoLinger")
	}
	e.update(self, map[string]netip.AddrPort{"b": netip.MustParseAddrPort("192.0.2.3:7946")})
	e.update(self, map[string]netip.AddrPort{"b": b})
	if tg := e.targets["b"]; tg == nil || tg.addr != b.Addr() || !tg.answered.IsZero() {
		t.Errorf("b, on another address and back, kept an old answer: %+v", tg)
	}
}

// A member this one does not watch is pinged from the moment a check is
// about it, or memberlist drops it, so that KernelUp can tell a cut in
// the gossip from a death there too (in a cluster larger than the
// watched few).
func TestEchoConsult(t *testing.T) {
	self := netip.MustParseAddr("192.0.2.1")
	b, c := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	// tried: no socket is opened, the echoes go nowhere.
	e := &echoer{targets: map[string]*echoTarget{}, conns: map[bool]*icmp.PacketConn{}, tried: map[bool]bool{true: true, false: true}}
	e.update(self, map[string]netip.AddrPort{"c": netip.AddrPortFrom(c, 7946)})
	e.consult("b", b, self)
	e.consult("c", c, self)
	e.consult("self-too", self, self)
	if tg := e.targets["b"]; tg == nil || tg.addr != b || tg.lingerUntil.IsZero() {
		t.Fatalf("b, consulted, is not pinged unjudged: %+v", tg)
	}
	if !e.targets["c"].lingerUntil.IsZero() {
		t.Error("consulting a watched member made it linger")
	}
	if e.targets["self-too"] != nil {
		t.Error("a member on this member's address is pinged")
	}
	if e.answeredWithin("b", kernelUpWithin, time.Now()) {
		t.Error("b counts as up before it answered")
	}
	e.targets["b"].answered = time.Now()
	if !e.answeredWithin("b", kernelUpWithin, time.Now()) {
		t.Error("b's answer does not count")
	}
	e.judge(time.Now().Add(time.Hour))
	if e.targets["b"].checking {
		t.Error("a consulted member was judged")
	}
	e.prune(time.Now().Add(echoLinger + time.Second))
	if e.targets["b"] != nil {
		t.Error("a consulted member outlived echoLinger")
	}
}

// The fast path consults the echoes about the member it checks, and about
// one memberlist drops.
func TestCheckConsultsEchoes(t *testing.T) {
	fp := newFastPath("a", testLogger("a"), testTiming(t), false, func() {})
	fp.echo = &echoer{targets: map[string]*echoTarget{}, conns: map[bool]*icmp.PacketConn{}, tried: map[bool]bool{true: true, false: true}}
	fp.addrs["a"] = netip.MustParseAddrPort("127.0.0.1:7946")
	// Nothing listens on 127.0.0.2:1 (refused at once): the check is quick.
	fp.addrs["b"] = netip.MustParseAddrPort("127.0.0.2:1")
	fp.check("b", "test", false)
	if tg := fp.echo.targets["b"]; tg == nil || tg.lingerUntil.IsZero() {
		t.Errorf("b, checked, is not pinged: %+v", tg)
	}
	fp.addrs["c"] = netip.MustParseAddrPort("127.0.0.3:7946")
	fp.gone(&memberlist.Node{Name: "c", Addr: net.ParseIP("127.0.0.3"), Port: 7946})
	if tg := fp.echo.targets["c"]; tg == nil || tg.lingerUntil.IsZero() {
		t.Errorf("c, dropped, is not pinged: %+v", tg)
	}
	// memberlist's own probe dial (short timeout: the kernel-level dial).
	fp.addrs["d"] = netip.MustParseAddrPort("127.0.0.4:1")
	tr := &transport{fp: fp}
	if c, err := tr.DialAddressTimeout(memberlist.Address{Addr: "127.0.0.4:1", Name: "d"}, 50*time.Millisecond); err == nil {
		_ = c.Close()
	}
	if tg := fp.echo.targets["d"]; tg == nil || tg.lingerUntil.IsZero() {
		t.Errorf("d, probed by memberlist, is not pinged: %+v", tg)
	}
}

// A member back from the dead gets a full state exchange from the members
// that watch it and from a few others at random, not from every member.
func TestSyncsWithReturning(t *testing.T) {
	fp := newFastPath("m000", testLogger("m000"), testTiming(t), false, func() {})
	const n = 100
	for i := range n {
		fp.addrs[fmt.Sprintf("m%03d", i)] = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(7000+i))
	}
	for _, watched := range []string{"m001", "m002", "m003"} {
		if !fp.syncsWithReturning(watched) {
			t.Errorf("%s, which m000 watches, gets no state exchange", watched)
		}
	}
	const trials = 10000
	synced := 0
	for range trials {
		if fp.syncsWithReturning("m050") {
			synced++
		}
	}
	// returningSyncs in n: about 300 of 10,000.
	if want := trials * returningSyncs / n; synced < want/2 || synced > want*2 {
		t.Errorf("a member m000 does not watch got %d state exchanges in %d returns, want about %d", synced, trials, want)
	}
}
