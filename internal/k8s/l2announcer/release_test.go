package l2announcer

import (
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/layer2"
)

func TestPlanReleases(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	v4, v6 := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8::200")
	eth0 := []string{"eth0"}
	both := map[netip.Addr][]string{v4: eth0, v6: eth0}
	alive := map[string]bool{"n1": true, "n2": true, "n3": true}
	toN2 := map[netip.Addr]string{v4: "n2", v6: "n2"}
	handOver := func(until time.Time) release { return release{successor: "n2", ifaces: eth0, until: until} }
	tests := []struct {
		name string
		in   releaseInput
		want map[netip.Addr]release
	}{
		{"drained: both addresses answered on until the successor is heard",
			releaseInput{selfDrained: true, answering: both, announcer: toN2},
			map[netip.Addr]release{v4: handOver(now.Add(releaseOverlap)), v6: handOver(now.Add(releaseOverlap))}},
		{"not drained, successor not drained before: withdrawn at once (an ordinary move)",
			releaseInput{answering: both, announcer: toN2},
			map[netip.Addr]release{}},
		{"undrain: the successor was drained in the last plan",
			releaseInput{wasDrained: map[string]bool{"n2": true}, answering: both, announcer: toN2},
			map[netip.Addr]release{v4: handOver(now.Add(releaseOverlap)), v6: handOver(now.Add(releaseOverlap))}},
		{"the successor is back (a restart, a reboot): answered on until it is heard",
			releaseInput{returned: map[string]bool{"n2": true}, answering: both, announcer: toN2},
			map[netip.Addr]release{v4: handOver(now.Add(releaseOverlap)), v6: handOver(now.Add(releaseOverlap))}},
		{"another speaker is back, not the successor: withdrawn at once",
			releaseInput{returned: map[string]bool{"n3": true}, answering: both, announcer: toN2},
			map[netip.Addr]release{}},
		{"kept addresses are no hand-over",
			releaseInput{selfDrained: true, answering: both, want: map[netip.Addr][]string{v6: eth0}, announcer: toN2},
			map[netip.Addr]release{v4: handOver(now.Add(releaseOverlap))}},
		{"a dead successor is a failover, not a hand-over",
			releaseInput{selfDrained: true, answering: both, announcer: toN2, alive: map[string]bool{"n1": true}},
			map[netip.Addr]release{}},
		{"an address nobody announces any more is withdrawn",
			releaseInput{selfDrained: true, answering: both, announcer: map[netip.Addr]string{v4: "n2"}},
			map[netip.Addr]release{v4: handOver(now.Add(releaseOverlap))}},
		{"the successor heard: withdrawn",
			releaseInput{selfDrained: true, answering: both, announcer: toN2,
				pending: map[netip.Addr]release{v4: handOver(now.Add(time.Second)), v6: handOver(now.Add(time.Second))},
				heard:   map[netip.Addr]heardFrom{v4: {node: "n2", at: now.Add(-10 * time.Millisecond)}, v6: {node: "n3", at: now}}},
			map[netip.Addr]release{v6: handOver(now.Add(time.Second))}},
		{"the successor heard before this plan (it reacted first): no overlap needed",
			releaseInput{selfDrained: true, answering: both, announcer: toN2,
				heard: map[netip.Addr]heardFrom{v4: {node: "n2", at: now.Add(-time.Second)}, v6: {node: "n2", at: now.Add(-claimMemory)}}},
			map[netip.Addr]release{v6: handOver(now.Add(releaseOverlap))}},
		{"the overlap ends at its bound",
			releaseInput{selfDrained: true, answering: both, announcer: toN2,
				pending: map[netip.Addr]release{v4: handOver(now), v6: handOver(now.Add(time.Millisecond))}},
			map[netip.Addr]release{v6: handOver(now.Add(time.Millisecond))}},
		{"another successor ends the hand-over",
			releaseInput{selfDrained: true, answering: both, announcer: map[netip.Addr]string{v4: "n3", v6: "n2"},
				pending: map[netip.Addr]release{v4: handOver(now.Add(time.Second)), v6: handOver(now.Add(time.Second))}},
			map[netip.Addr]release{v6: handOver(now.Add(time.Second))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.self, in.now = "n1", now
			if in.alive == nil {
				in.alive = alive
			}
			got := planReleases(in)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(release{})); diff != "" {
				t.Errorf("planReleases (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReleasesAcrossPlans follows one drain through releases: the plan
// that drains this node starts the hand-over, the successor's claim ends
// it, and a later undrain that moves an address back to a node keeps
// that node's predecessor answering too.
func TestReleasesAcrossPlans(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	v4 := netip.MustParseAddr("198.51.100.200")
	eth0 := []string{"eth0"}
	alive := map[string]bool{"n1": true, "n2": true}
	onN2 := []election.L2Announcement{{Address: v4, Node: "n2"}}
	var r releases
	// n1 announces; then it is drained.
	pending, retry := r.next("n1", []election.L2Node{{Name: "n1"}, {Name: "n2"}}, alive, nil, map[netip.Addr][]string{v4: eth0},
		[]election.L2Announcement{{Address: v4, Node: "n1"}}, now)
	if len(pending) != 0 || retry != 0 {
		t.Fatalf("first plan: hand-overs %v, retry %v", pending, retry)
	}
	drainedN1 := []election.L2Node{{Name: "n1", Drained: true}, {Name: "n2"}}
	pending, retry = r.next("n1", drainedN1, alive, map[netip.Addr][]string{v4: eth0}, map[netip.Addr][]string{}, onN2, now)
	if diff := cmp.Diff(map[netip.Addr]release{v4: {successor: "n2", ifaces: eth0, until: now.Add(releaseOverlap)}}, pending, cmp.AllowUnexported(release{})); diff != "" {
		t.Errorf("drain: hand-overs (-want +got):\n%s", diff)
	}
	if retry != releaseOverlap {
		t.Errorf("drain: plan again after %v, want %v", retry, releaseOverlap)
	}
	// Another node's claim changes nothing; the successor's ends it.
	if r.claimed(layer2.PeerClaim{Address: v4, Node: "n3"}, now) {
		t.Error("a claim by a node that is not the successor ends the hand-over")
	}
	if !r.claimed(layer2.PeerClaim{Address: v4, Node: "n2"}, now.Add(5*time.Millisecond)) {
		t.Error("the successor's claim does not end the hand-over")
	}
	answering := map[netip.Addr][]string{v4: eth0}
	if pending, _ = r.next("n1", drainedN1, alive, answering, map[netip.Addr][]string{}, onN2, now.Add(6*time.Millisecond)); len(pending) != 0 {
		t.Errorf("after the successor's claim: hand-overs %v", pending)
	}
	// On n2, which took the address while n1 was drained: n1's undrain
	// moves it back, make-before-break.
	var onn2 releases
	onn2.next("n2", drainedN1, alive, nil, map[netip.Addr][]string{v4: eth0}, onN2, now)
	pending, _ = onn2.next("n2", []election.L2Node{{Name: "n1"}, {Name: "n2"}}, alive, answering, map[netip.Addr][]string{},
		[]election.L2Announcement{{Address: v4, Node: "n1"}}, now)
	if diff := cmp.Diff(map[netip.Addr]release{v4: {successor: "n1", ifaces: eth0, until: now.Add(releaseOverlap)}}, pending, cmp.AllowUnexported(release{})); diff != "" {
		t.Errorf("undrain: hand-overs on n2 (-want +got):\n%s", diff)
	}
	// On n3, which took the address while n1 was away (a restart while
	// the API server was down): n1's return moves it back,
	// make-before-break; a node that was alive all along does not.
	var onn3 releases
	nodes := []election.L2Node{{Name: "n1"}, {Name: "n3"}}
	onN3 := []election.L2Announcement{{Address: v4, Node: "n3"}}
	backToN1 := []election.L2Announcement{{Address: v4, Node: "n1"}}
	onn3.next("n3", nodes, map[string]bool{"n3": true}, nil, map[netip.Addr][]string{v4: eth0}, onN3, now)
	pending, _ = onn3.next("n3", nodes, map[string]bool{"n1": true, "n3": true}, answering, map[netip.Addr][]string{}, backToN1, now)
	if diff := cmp.Diff(map[netip.Addr]release{v4: {successor: "n1", ifaces: eth0, until: now.Add(releaseOverlap)}}, pending, cmp.AllowUnexported(release{})); diff != "" {
		t.Errorf("return: hand-overs on n3 (-want +got):\n%s", diff)
	}
	var steady releases
	both := map[string]bool{"n1": true, "n3": true}
	steady.next("n3", nodes, both, nil, map[netip.Addr][]string{v4: eth0}, onN3, now)
	if pending, _ = steady.next("n3", nodes, both, answering, map[netip.Addr][]string{}, backToN1, now); len(pending) != 0 {
		t.Errorf("an ordinary move: hand-overs %v", pending)
	}
}

func TestDrained(t *testing.T) {
	node := func(labels map[string]string, cordoned bool) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: labels}, Spec: corev1.NodeSpec{Unschedulable: cordoned}}
	}
	tests := []struct {
		name     string
		node     *corev1.Node
		onCordon bool
		want     bool
	}{
		{"plain node", node(nil, false), true, false},
		{"drain label", node(map[string]string{"barelb.io/drain": "true"}, false), false, true},
		{"drain label with any value", node(map[string]string{"barelb.io/drain": ""}, false), false, true},
		{"cordoned, cordon not followed (the default)", node(nil, true), false, false},
		{"cordoned with --drain-on-cordon", node(nil, true), true, true},
	}
	for _, tt := range tests {
		if got := drained(tt.node, tt.onCordon); got != tt.want {
			t.Errorf("%s: drained = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestReportNoCommonEndpoint: the plan's reporter tells each Service
// sharing an address that no node holds endpoints of all of them, once;
// other speakers do not; once announced again, a new loss is told again.
func TestReportNoCommonEndpoint(t *testing.T) {
	v4 := netip.MustParseAddr("198.51.100.10")
	in := &inputs{byKey: map[string]*servicecache.Service{
		"ns/a": {Namespace: "ns", Name: "a"}, "ns/b": {Namespace: "ns", Name: "b"},
	}}
	lost := []election.L2Announcement{{Address: v4, Key: v4, Services: []string{"ns/a", "ns/b"}, NoCommonEndpoint: true, Reporter: "n1"}}
	announced := []election.L2Announcement{{Address: v4, Key: v4, Node: "n2", Owner: "n2", Services: []string{"ns/a", "ns/b"}}}
	recorder := record.NewFakeRecorder(10)
	o := &Observer{Recorder: recorder, Log: logr.Discard(), Node: "n1"}
	other := &Observer{Recorder: recorder, Log: logr.Discard(), Node: "n2"}
	var got []string
	for _, plan := range [][]election.L2Announcement{lost, lost, announced, lost} {
		o.reportNoCommonEndpoint(in, plan)
		other.reportNoCommonEndpoint(in, plan)
	drain:
		for {
			select {
			case e := <-recorder.Events:
				got = append(got, e)
			default:
				break drain
			}
		}
	}
	msg := "Warning NoCommonEndpoint address 198.51.100.10 is shared by ns/a, ns/b; with externalTrafficPolicy Local it is announced only from a node holding a ready endpoint of every one of them, and no node does: it is not announced"
	if diff := cmp.Diff([]string{msg, msg, msg, msg}, got); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
}
