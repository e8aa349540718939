package heartbeat

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/barelb/barelb/internal/testenv"
)

func TestFallbackAlive(t *testing.T) {
	ready := map[string]bool{"a": true, "b": true, "c": false, "d": true}
	running := func(states ...string) map[string]Speaker {
		out := map[string]Speaker{}
		for i, st := range states {
			node := string(rune('a' + i))
			if st != "" {
				out[node] = Speaker{Node: node, State: State{Memberlist: st}}
			}
		}
		return out
	}
	tests := []struct {
		name    string
		running map[string]Speaker
		want    map[string]bool
	}{
		{"no Lease at all (older speakers): node readiness", nil, map[string]bool{"a": true, "b": true, "c": false, "d": true}},
		{"only Ready nodes whose speaker runs", running(MemberlistOff, "", MemberlistOff, MemberlistOff),
			map[string]bool{"a": true, "d": true}},
		{"every speaker in fallback: among them", running(MemberlistFallback, MemberlistFallback, MemberlistFallback, ""),
			map[string]bool{"a": true, "b": true}},
		{"the others formed a memberlist without this one: it stands aside", running(MemberlistFallback, MemberlistFormed, MemberlistFormed, MemberlistFormed),
			map[string]bool{}},
		{"its own formed Lease (an old one) does not count", running(MemberlistFormed, MemberlistFallback), map[string]bool{"a": true, "b": true}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, FallbackAlive("a", ready, tc.running)); diff != "" {
			t.Errorf("%s: alive (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestLeases: a speaker's Writer keeps its Lease, which the others read
// as running with its state and MACs; a Lease no longer renewed goes
// stale after Duration on the reader's clock; a stopping Writer deletes
// its Lease.
func TestLeases(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "barelb-system"}}); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:0a")
	subnets := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/64")}
	w := &Writer{Client: env.Client, Log: testr.New(t), Namespace: "barelb-system", Node: "n1",
		State: func() State {
			return State{Memberlist: MemberlistFormed, MACs: []net.HardwareAddr{mac}, Subnets: subnets}
		}}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w.Start(wctx); close(done) }()

	s := &Speakers{Reader: env.Client, Namespace: "barelb-system"}
	var running map[string]Speaker
	deadline := time.Now().Add(10 * time.Second)
	for len(running) == 0 && time.Now().Before(deadline) {
		var err error
		if running, err = s.Running(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := map[string]Speaker{"n1": {Node: "n1", State: State{Memberlist: MemberlistFormed, MACs: []net.HardwareAddr{mac}, Subnets: subnets}}}
	if diff := cmp.Diff(want, running, cmpopts.IgnoreFields(Speaker{}, "RenewedAt"), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Fatalf("running speakers (-want +got):\n%s", diff)
	}
	if node, ok := s.NodeOf(mac); !ok || node != "n1" {
		t.Errorf("NodeOf(%s) = %q, %v; want n1", mac, node, ok)
	}
	// A Lease nobody renews (its speaker died) is stale once this
	// speaker has not seen it renewed for Duration.
	now := metav1.NewMicroTime(time.Now())
	dead := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "barelb-system", Name: LeaseName("n2"), Labels: map[string]string{LabelComponent: ComponentSpeaker}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n2"), RenewTime: &now},
	}
	if err := env.Client.Create(ctx, dead); err != nil {
		t.Fatal(err)
	}
	s2 := &Speakers{Reader: env.Client, Namespace: "barelb-system"}
	if running, _ := s2.Running(ctx, now.Time); running["n2"].Node != "n2" {
		t.Errorf("a Lease just renewed does not count: %v", running)
	}
	if running, _ := s2.Running(ctx, now.Add(Duration+time.Second)); running["n2"].Node != "" {
		t.Errorf("a Lease not renewed for longer than %s still counts: %v", Duration, running)
	}
	// The subnets of every Lease, fresh or not; none from a Lease that
	// names none (or names them wrong).
	dead.Annotations = map[string]string{AnnotationSubnets: "203.0.113.128/26"}
	if err := env.Client.Update(ctx, dead); err != nil {
		t.Fatal(err)
	}
	got, err := s2.Subnets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantSubnets := map[string][]netip.Prefix{"n1": subnets, "n2": {netip.MustParsePrefix("203.0.113.128/26")}}
	if diff := cmp.Diff(wantSubnets, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("subnets (-want +got):\n%s", diff)
	}
	if st := parseState(map[string]string{AnnotationSubnets: "203.0.113.128/26,nonsense"}); st.Subnets != nil {
		t.Errorf("subnets from a bad annotation: %v", st.Subnets)
	}
	if err := env.Client.Delete(ctx, dead); err != nil {
		t.Fatal(err)
	}

	stop()
	<-done
	if running, _ := s.Running(ctx, time.Now()); len(running) != 0 {
		t.Errorf("a stopped speaker's Lease still counts: %v", running)
	}
}
