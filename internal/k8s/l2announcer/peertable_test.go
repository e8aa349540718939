package l2announcer

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/k8s/servicecache"
)

// tableOf is the table a speaker with these objects in its caches hands
// out, trimmed as its caches trim them.
func tableOf(t *testing.T, objs []client.Object, version uint64) *planTable {
	t.Helper()
	transforms := CacheTransforms()
	table := &planTable{Version: version, ReadBy: "n1", Endpoints: map[string][]string{}}
	for _, obj := range objs {
		obj = obj.DeepCopyObject().(client.Object)
		for kind, tf := range transforms {
			if reflect.TypeOf(kind) == reflect.TypeOf(obj) {
				out, err := tf(obj)
				if err != nil {
					t.Fatal(err)
				}
				obj = out.(client.Object)
			}
		}
		switch o := obj.(type) {
		case *barelbv1beta1.IPAddressPool:
			table.Pools = append(table.Pools, *o)
		case *barelbv1beta1.L2Advertisement:
			table.Advertisements = append(table.Advertisements, *o)
		case *corev1.Node:
			table.Nodes = append(table.Nodes, *o)
		}
	}
	recs := recordsOf(objs)
	table.ServiceRecords = recs.services
	for key, nodes := range recs.nodes {
		for n := range nodes {
			table.Endpoints[key] = append(table.Endpoints[key], n)
		}
	}
	return table
}

// TestPeerTableCarriesWhatThePlanReads: a speaker that plans from
// another's table, encoded and decoded as memberlist carries it, makes the
// plan that speaker makes from its caches.
func TestPeerTableCarriesWhatThePlanReads(t *testing.T) {
	objs := append(sampleObjects(),
		&barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "zone-a", Namespace: namespace},
			Spec: barelbv1beta1.L2AdvertisementSpec{NodeSelectors: []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"zone": "a"}}}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n4", Labels: map[string]string{"zone": "a"}},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
	)
	table := tableOf(t, objs, 42)
	b, err := encodeTable(table)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeTable(b)
	if err != nil {
		t.Fatal(err)
	}
	alive := map[string]bool{"n1": true, "n3": true, "n4": true}
	direct := inputsFrom(table.Pools, table.Advertisements, table.Nodes, recordsOf(objs), "", alive, true, false)
	fromPeer := inputsFrom(got.Pools, got.Advertisements, got.Nodes, got, "", alive, true, false)
	opts := cmp.Options{cmpopts.EquateEmpty(), addrEqual}
	if diff := cmp.Diff(direct.services, fromPeer.services, opts); diff != "" {
		t.Errorf("services (-caches +table):\n%s", diff)
	}
	if diff := cmp.Diff(direct.nodes, fromPeer.nodes, opts); diff != "" {
		t.Errorf("nodes (-caches +table):\n%s", diff)
	}
	if diff := cmp.Diff(direct.byKey, fromPeer.byKey, opts, cmpopts.IgnoreUnexported(servicecache.Service{})); diff != "" {
		t.Errorf("Service records (-caches +table):\n%s", diff)
	}
	want := election.PlanL2(direct.services, direct.pools, direct.advs, direct.nodes)
	if len(want) == 0 {
		t.Fatal("the test's cluster plans nothing")
	}
	if diff := cmp.Diff(want, election.PlanL2(fromPeer.services, fromPeer.pools, fromPeer.advs, fromPeer.nodes), opts); diff != "" {
		t.Errorf("plan (-caches +table):\n%s", diff)
	}
}

// TestPeerTableTakesTheNewest: a speaker keeps the table read at the
// highest resourceVersion, hands on what it was given, refuses what it
// cannot read, and drops it all once it reads the API itself.
func TestPeerTableTakesTheNewest(t *testing.T) {
	encode := func(version uint64) []byte {
		b, err := encodeTable(&planTable{Version: version, ReadBy: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := NewPeerTable(PeerTableOptions{Log: testr.New(t), Node: "n2"})
	if p.LocalJoinState() != nil || p.current() != nil {
		t.Fatal("a new table has something to hand out")
	}
	v5 := encode(5)
	p.MergeJoinState(v5)
	select {
	case <-p.arrived:
	default:
		t.Error("a table arrived unannounced")
	}
	for _, b := range [][]byte{encode(3), []byte("garbage"), append([]byte(peerTableMagic), "not gzip"...), encode(5)} {
		p.MergeJoinState(b)
	}
	if got := p.current(); got == nil || got.Version != 5 {
		t.Fatalf("table after older and unreadable ones: %+v, want version 5", got)
	}
	if !bytes.Equal(p.LocalJoinState(), v5) {
		t.Error("the table given is not handed on as it came")
	}
	p.MergeJoinState(encode(7))
	if got := p.current(); got.Version != 7 {
		t.Errorf("version %d after a newer table, want 7", got.Version)
	}
	p.readFromAPI()
	p.MergeJoinState(encode(9))
	if got := p.current(); got != nil {
		t.Errorf("a speaker that reads the API kept or took a table: %+v", got)
	}
}
