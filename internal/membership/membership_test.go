package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/internal/testutil"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
)

func key(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no name", Config{BindAddr: loopback}, "NodeName"},
		{"no address", Config{NodeName: "a"}, "BindAddr"},
		{"unspecified address", Config{NodeName: "a", BindAddr: "0.0.0.0"}, "own address"},
		{"bad port", Config{NodeName: "a", BindAddr: loopback, BindPort: 70000}, "out of range"},
		{"bad key", Config{NodeName: "a", BindAddr: loopback, SecretKey: key(15, 1)}, "15 bytes"},
		{"bad extra key", Config{NodeName: "a", BindAddr: loopback, SecretKey: key(16, 1), ExtraSecretKeys: [][]byte{key(16, 2), key(8, 3)}}, "ExtraSecretKeys[1] is 8 bytes"},
		{"extra keys without a key", Config{NodeName: "a", BindAddr: loopback, ExtraSecretKeys: [][]byte{key(16, 2)}}, "without a SecretKey"},
		{"timeout not below interval", Config{NodeName: "a", BindAddr: loopback,
			Timing: Timing{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond}}, "ProbeTimeout"},
		{"negative", Config{NodeName: "a", BindAddr: loopback, Timing: Timing{TCPTimeout: -1}}, "TCPTimeout"},
		{"metadata too large", Config{NodeName: "a", BindAddr: loopback, Meta: make([]byte, MaxMetaSize+1)}, "Meta is 513 bytes"},
		{"zero suspicion mult is defaulted, negative is not", Config{NodeName: "a", BindAddr: loopback,
			Timing: Timing{SuspicionMult: -1}}, "SuspicionMult"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.cfg)
			if err == nil {
				_ = m.Shutdown()
				t.Fatalf("New succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestTimingDefaults(t *testing.T) {
	got := Timing{ProbeInterval: time.Second, ProbeTimeout: 300 * time.Millisecond}.withDefaults()
	want := LANTiming()
	want.ProbeInterval, want.ProbeTimeout = time.Second, 300*time.Millisecond
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("withDefaults (-want +got):\n%s", diff)
	}
	if err := LANTiming().validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSplitLogLine(t *testing.T) {
	tests := []struct{ line, level, msg string }{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", "debug", "Stream connection from=127.0.0.1:1"},
		{"[WARN] memberlist: Refuting a suspect message (from: b)", "warn", "Refuting a suspect message (from: b)"},
		{"[ERR] Failed to shutdown transport: x", "err", "Failed to shutdown transport: x"},
		{"no level here", "info", "no level here"},
		{"[unterminated", "info", "[unterminated"},
	}
	for _, tt := range tests {
		level, msg := splitLogLine(tt.line)
		if level != tt.level || msg != tt.msg {
			t.Errorf("splitLogLine(%q) = %q, %q; want %q, %q", tt.line, level, msg, tt.level, tt.msg)
		}
	}
}

func TestParsePeers(t *testing.T) {
	m := &Membership{}
	m.self = mustAddrPort(t, "10.0.0.1:7946")
	tests := []struct {
		peers   []string
		want    []string
		wantErr bool
	}{
		{[]string{"10.0.0.2:7946", "10.0.0.3"}, []string{"10.0.0.2:7946", "10.0.0.3:7946"}, false},
		{[]string{"10.0.0.1:7946", "10.0.0.1", "10.0.0.1:8000"}, []string{"10.0.0.1:8000"}, false},
		{[]string{"::ffff:10.0.0.2"}, []string{"10.0.0.2:7946"}, false},
		{[]string{"[fd00::2]:7946"}, []string{"[fd00::2]:7946"}, false},
		{[]string{"node-b:7946"}, nil, true},
	}
	for _, tt := range tests {
		got, err := m.parsePeers(tt.peers)
		if (err != nil) != tt.wantErr {
			t.Errorf("parsePeers(%v) error %v, wantErr %v", tt.peers, err, tt.wantErr)
			continue
		}
		var gs []string
		for _, g := range got {
			gs = append(gs, g.String())
		}
		if strings.Join(gs, ",") != strings.Join(tt.want, ",") {
			t.Errorf("parsePeers(%v) = %v, want %v", tt.peers, gs, tt.want)
		}
	}
}

// TestJoin: three members, each given one seed, all see the same three.
func TestJoin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  []byte
	}{
		{"unencrypted", nil},
		{"AES-128", key(16, 1)},
		{"AES-192", key(24, 2)},
		{"AES-256", key(32, 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, pa := startMember(t, "a", memberOpts{key: tt.key})
			b, pb := startMember(t, "b", memberOpts{key: tt.key})
			c, _ := startMember(t, "c", memberOpts{key: tt.key})
			join(t, b, pa)
			join(t, c, pb) // c knows only b, and must learn a through it
			testutil.Eventually(t, 15*time.Second, "all see a, b, c", sees([]*Membership{a, b, c}, "a", "b", "c"))
		})
	}
}

// TestKeyRotation: each step of a key rotation keeps one memberlist
// between members of this step and of the one before (a rolling restart
// runs both at once), and members two steps apart do not meet.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := key(32, 1), key(32, 2)
	type keys struct {
		key   []byte
		extra [][]byte
	}
	start := keys{k1, nil}
	step1 := keys{k1, [][]byte{k2}} // the new key accepted
	step2 := keys{k2, [][]byte{k1}} // and used
	step3 := keys{k2, nil}          // the old one dropped
	for _, tt := range []struct {
		name  string
		a, b  keys
		meets bool
	}{
		{"start and step 1", start, step1, true},
		{"step 1 and step 2", step1, step2, true},
		{"step 2 and step 3", step2, step3, true},
		{"start and step 2", start, step2, false},
		{"start and step 3", start, step3, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, pa := startMember(t, "a", memberOpts{key: tt.a.key, extra: tt.a.extra})
			b, _ := startMember(t, "b", memberOpts{key: tt.b.key, extra: tt.b.extra})
			n, err := b.Join(context.Background(), []string{addr(pa)})
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			if !tt.meets {
				if n != 0 || lists(a, "b") || lists(b, "a") {
					t.Fatalf("members two steps apart met: a %v, b %v", a.Members(), b.Members())
				}
				return
			}
			testutil.Eventually(t, 15*time.Second, "a and b see each other", sees([]*Membership{a, b}, "a", "b"))
			// And they stay together (probes and gossip both ways).
			time.Sleep(time.Second)
			if !lists(a, "b") || !lists(b, "a") {
				t.Fatalf("a and b fell apart: a %v, b %v", a.Members(), b.Members())
			}
		})
	}
}

// TestIntruderCannotJoin: a member without the cluster's key never becomes
// a member, on either side.
func TestIntruderCannotJoin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		clusterKey, intrKey []byte
	}{
		{"wrong key", key(32, 1), key(32, 2)},
		{"no key into encrypted", key(16, 1), nil},
		{"key into unencrypted", nil, key(16, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, pa := startMember(t, "a", memberOpts{key: tt.clusterKey})
			b, _ := startMember(t, "b", memberOpts{key: tt.clusterKey})
			join(t, b, pa)
			testutil.Eventually(t, 15*time.Second, "a and b see each other", sees([]*Membership{a, b}, "a", "b"))

			x, _ := startMember(t, "x", memberOpts{key: tt.intrKey})
			n, err := x.Join(context.Background(), []string{addr(pa)})
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			if n != 0 {
				t.Errorf("Join answered by %d peers, want 0", n)
			}
			// The intruder keeps retrying in the background; watch for
			// several probe and retry rounds.
			end := time.Now().Add(1500 * time.Millisecond)
			for time.Now().Before(end) {
				if lists(a, "x") || lists(b, "x") {
					t.Fatalf("intruder listed: a %v, b %v", a.Members(), b.Members())
				}
				if got := x.Members(); len(got) != 1 {
					t.Fatalf("intruder sees %v", got)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestLeave: a member that leaves is dropped at once and Changes fires.
// TestMetadata: every member learns every other's metadata, and keeps
// that of a member that left (it may still be heard for a moment).
func TestMetadata(t *testing.T) {
	t.Parallel()
	a, pa := startMember(t, "a", memberOpts{meta: []byte("meta of a")})
	b, _ := startMember(t, "b", memberOpts{meta: []byte("meta of b")})
	c, _ := startMember(t, "c", memberOpts{})
	join(t, b, pa)
	join(t, c, pa)
	testutil.Eventually(t, 15*time.Second, "all see a, b, c", sees([]*Membership{a, b, c}, "a", "b", "c"))
	want := map[string][]byte{"a": []byte("meta of a"), "b": []byte("meta of b")}
	for name, m := range map[string]*Membership{"a": a, "b": b, "c": c} {
		if diff := cmp.Diff(want, m.Metadata()); diff != "" {
			t.Errorf("%s: Metadata() (-want +got):\n%s", name, diff)
		}
	}
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "a and c drop b", sees([]*Membership{a, c}, "a", "c"))
	if diff := cmp.Diff(want, a.Metadata()); diff != "" {
		t.Errorf("after b left: Metadata() (-want +got), b's kept:\n%s", diff)
	}
}

// TestSetMeta: a member's new metadata reaches the others, and a change
// too large is refused without changing what they know.
func TestSetMeta(t *testing.T) {
	t.Parallel()
	a, pa := startMember(t, "a", memberOpts{meta: []byte("old")})
	b, _ := startMember(t, "b", memberOpts{})
	join(t, b, pa)
	testutil.Eventually(t, 15*time.Second, "a and b see each other", sees([]*Membership{a, b}, "a", "b"))
	if err := a.SetMeta([]byte("new"), time.Second); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]*Membership{"a": a, "b": b} {
		testutil.Eventually(t, 15*time.Second, name+" knows a's new metadata", func() (bool, string) {
			got := string(m.Metadata()["a"])
			return got == "new", fmt.Sprintf("a's metadata is %q", got)
		})
	}
	if err := a.SetMeta(make([]byte, MaxMetaSize+1), time.Second); err == nil {
		t.Error("SetMeta took more than MaxMetaSize bytes")
	}
	if got := string(a.Metadata()["a"]); got != "new" {
		t.Errorf("after a refused change: a's metadata %q, want %q", got, "new")
	}
}

func TestLeave(t *testing.T) {
	t.Parallel()
	const grace = 2 * time.Second
	a, pa := startMember(t, "a", memberOpts{leftGrace: grace})
	b, _ := startMember(t, "b", memberOpts{leftGrace: grace})
	c, _ := startMember(t, "c", memberOpts{})
	join(t, b, pa)
	join(t, c, pa)
	testutil.Eventually(t, 15*time.Second, "all see a, b, c", sees([]*Membership{a, b, c}, "a", "b", "c"))
	drain(a.Changes())
	drain(b.Changes())

	start := time.Now()
	left := make(chan error, 1)
	go func() { left <- c.Leave(time.Second) }()
	testutil.Eventually(t, 15*time.Second, "a and b drop c", sees([]*Membership{a, b}, "a", "b"))
	took := time.Since(start)
	if err := <-left; err != nil {
		t.Fatalf("Leave: %v", err)
	}
	t.Logf("leave seen by both others after %v; Leave returned after %v", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	// No timing assertion (speed is for benchmarks): a Leave that did not
	// broadcast would leave c alive and answering probes, and the wait
	// above would fail.
	// Both know that c left on purpose (it may answer on for its
	// hand-over), and that b has not.
	for name, m := range map[string]*Membership{"a": a, "b": b} {
		testutil.Eventually(t, 5*time.Second, name+" knowing that c left", func() (bool, string) { return m.Left("c"), "c has not left" })
		if m.Left("b") || m.Left("a") {
			t.Errorf("%s: a member that did not leave counts as left", name)
		}
	}
	// Only for the hand-over's time: heard later, it is back somewhere.
	testutil.Eventually(t, 3*grace, "c no longer counting as left after the grace", func() (bool, string) {
		la, lb := a.Left("c"), b.Left("c")
		return !la && !lb, fmt.Sprintf("left for a: %v, for b: %v", la, lb)
	})
	for name, m := range map[string]*Membership{"a": a, "b": b} {
		select {
		case <-m.Changes():
		default:
			t.Errorf("%s: Changes did not fire", name)
		}
	}
	if _, err := c.Join(context.Background(), []string{addr(pa)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Leave: %v, want ErrClosed", err)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := c.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leave after Shutdown: %v, want ErrClosed", err)
	}
	if _, err := c.Join(context.Background(), []string{addr(pa)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Shutdown: %v, want ErrClosed", err)
	}
}

// TestJoinRetriesUntilPeerAppears: at DaemonSet start the peers may not be
// up yet; Join returns 0 and keeps trying.
func TestJoinRetriesUntilPeerAppears(t *testing.T) {
	t.Parallel()
	a, _ := startMember(t, "a", memberOpts{})
	pb := freePort(t)
	n, err := a.Join(context.Background(), []string{addr(pb)})
	if err != nil || n != 0 {
		t.Fatalf("Join = %d, %v; want 0, nil", n, err)
	}
	time.Sleep(700 * time.Millisecond) // a few retries fail
	b, _ := startMember(t, "b", memberOpts{port: pb})
	testutil.Eventually(t, 15*time.Second, "a and b see each other", sees([]*Membership{a, b}, "a", "b"))
}

// TestJoinHealsPartition: once a member has company, Join keeps retrying
// the peers that are not members, so two groups that formed apart merge.
func TestJoinHealsPartition(t *testing.T) {
	t.Parallel()
	mk := func(name string, port int) *Membership {
		m, err := New(Config{NodeName: name, BindAddr: loopback, BindPort: port,
			Timing: Timing{RejoinInterval: 500 * time.Millisecond}, Logger: testLogger(name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Shutdown() })
		return m
	}
	pa, pb, pc, pd := freePort(t), freePort(t), freePort(t), freePort(t)
	a, b := mk("a", pa), mk("b", pb)
	join(t, a, pb, pc) // c is not up yet
	testutil.Eventually(t, 15*time.Second, "a and b", sees([]*Membership{a, b}, "a", "b"))

	c, d := mk("c", pc), mk("d", pd)
	join(t, d, pc)
	testutil.Eventually(t, 15*time.Second, "c and d", sees([]*Membership{c, d}, "c", "d"))
	// Generous: the merge takes ~1 s, but make test runs packages side by
	// side on two cores.
	testutil.Eventually(t, 15*time.Second, "one cluster", sees([]*Membership{a, b, c, d}, "a", "b", "c", "d"))
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func TestLogWriter(t *testing.T) {
	var got []string
	lg := funcr.New(func(prefix, args string) { got = append(got, args) }, funcr.Options{Verbosity: 2})
	w := logWriter{lg}
	if _, err := w.Write([]byte("[DEBUG] memberlist: Stream connection\n[WARN] memberlist: Refuting\n")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`"level"=2 "msg"="Stream connection" "memberlistLevel"="debug"`,
		`"level"=1 "msg"="Refuting" "memberlistLevel"="warn"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logged\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
