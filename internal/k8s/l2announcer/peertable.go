package l2announcer

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/servicecache"
)

// PeerTable carries the layer-2 plan's inputs between speakers, for a
// speaker that starts while the API server is away: it cannot read the
// cluster, so it would never be elected, and once the speakers that read
// it before the outage have died, the addresses would go dark. While the
// API server is away nobody can change an assignment, so the view of the
// speakers that read the cluster last is the truth; a starting speaker
// takes that view from them over memberlist (a push/pull on join, see
// membership.JoinState, encrypted with the memberlist key) and plans from
// it until the API server answers.
//
// A speaker that has read the cluster from the API hands out its own
// reading; one that plans from a table it was given hands that table on
// (a chain of restarts during a long outage). Among several tables the
// one read at the highest resourceVersion wins. PeerTable implements
// membership.JoinState.
type PeerTable struct {
	o PeerTableOptions

	// fromAPI is set once the reconciler has planned from the API: the
	// caches are synced, and tables from others are of no use.
	fromAPI atomic.Bool
	// arrived is signalled when a newer table arrives.
	arrived chan struct{}

	mu sync.Mutex
	// received is the newest table taken from another speaker, as it
	// came (handed on as is), and table the same decoded.
	received []byte
	table    *planTable
}

// PeerTableOptions are a speaker's caches and names.
type PeerTableOptions struct {
	Log logr.Logger
	// Reader is the cache of pools, L2Advertisements and Nodes, and
	// Services the cache of Services, endpoints and ServiceL2Statuses.
	Reader   client.Reader
	Services *servicecache.Cache
	// Namespace is barelb's; Node is this speaker's.
	Namespace, Node string
}

// NewPeerTable makes a speaker's table.
func NewPeerTable(o PeerTableOptions) *PeerTable {
	return &PeerTable{o: o, arrived: make(chan struct{}, 1)}
}

// planTable is what a speaker reads the layer-2 plan from, as objects:
// the same code turns them into the plan's inputs as turns the caches'
// (inputsFrom).
type planTable struct {
	// Version is the highest resourceVersion among the objects read.
	Version uint64 `json:"version"`
	// ReadBy is the node whose speaker read it from the API.
	ReadBy         string                          `json:"readBy"`
	Pools          []barelbv1beta1.IPAddressPool   `json:"pools"`
	Advertisements []barelbv1beta1.L2Advertisement `json:"advertisements"`
	Nodes          []corev1.Node                   `json:"nodes"`
	ServiceRecords []*servicecache.Service         `json:"services"`
	Endpoints      map[string][]string             `json:"endpointNodes,omitempty"`
	// AnnouncedBy names, per Service, the node its ServiceL2Status names:
	// an address taken over is not probed first.
	AnnouncedBy map[string]string `json:"announcedBy,omitempty"`
}

// Services and EndpointNodes make a table a ServiceSource.
func (t *planTable) Services() []*servicecache.Service { return t.ServiceRecords }

func (t *planTable) EndpointNodes(key string) map[string]bool {
	nodes := t.Endpoints[key]
	if len(nodes) == 0 {
		return nil
	}
	out := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		out[n] = true
	}
	return out
}

// lastAnnouncers is Reconciler.lastAnnouncers from the table.
func (t *planTable) lastAnnouncers() map[string]string {
	out := map[string]string{}
	for key, node := range t.AnnouncedBy {
		if node != "" {
			out[key] = node
		}
	}
	return out
}

// peerTableMagic starts every encoded table: a speaker of another format
// version refuses it instead of misreading it.
const peerTableMagic = "barelb-l2-plan-table/1\n"

// maxPeerTable bounds a decoded table (10,000 Services take about 3 MiB).
const maxPeerTable = 256 << 20

// peerTableReadTimeout bounds listing from the (synced) caches.
const peerTableReadTimeout = 5 * time.Second

func encodeTable(t *planTable) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(peerTableMagic)
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(t); err != nil {
		return nil, fmt.Errorf("encoding the plan table: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing the plan table: %w", err)
	}
	return buf.Bytes(), nil
}

func decodeTable(b []byte) (*planTable, error) {
	rest, ok := bytes.CutPrefix(b, []byte(peerTableMagic))
	if !ok {
		return nil, errors.New("not a plan table of this version")
	}
	zr, err := gzip.NewReader(bytes.NewReader(rest))
	if err != nil {
		return nil, fmt.Errorf("decompressing the plan table: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxPeerTable+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing the plan table: %w", err)
	}
	if len(raw) > maxPeerTable {
		return nil, fmt.Errorf("plan table larger than %d bytes", maxPeerTable)
	}
	var t planTable
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("decoding the plan table: %w", err)
	}
	return &t, nil
}

// LocalJoinState hands out this speaker's reading of the cluster, or the
// table it plans from; nil when it has neither.
func (t *PeerTable) LocalJoinState() []byte {
	if !t.fromAPI.Load() {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.received
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerTableReadTimeout)
	defer cancel()
	table, err := t.read(ctx)
	if err == nil {
		var b []byte
		if b, err = encodeTable(table); err == nil {
			return b
		}
	}
	t.o.Log.Error(err, "cannot hand the plan table to a joining speaker")
	return nil
}

// MergeJoinState takes another speaker's table, when this speaker has
// not read the cluster from the API and the table is newer than the one
// it has.
func (t *PeerTable) MergeJoinState(b []byte) {
	if t.fromAPI.Load() {
		return
	}
	table, err := decodeTable(b)
	if err != nil {
		t.o.Log.Error(err, "ignoring another speaker's plan table")
		return
	}
	t.mu.Lock()
	newer := t.table == nil || table.Version > t.table.Version
	if newer {
		t.received, t.table = bytes.Clone(b), table
	}
	t.mu.Unlock()
	if !newer {
		return
	}
	t.o.Log.Info("took the plan's inputs from another speaker (the API server has not answered this one yet)",
		"readBy", table.ReadBy, "resourceVersion", table.Version, "services", len(table.ServiceRecords))
	select {
	case t.arrived <- struct{}{}:
	default:
	}
}

// current is the table to plan from; nil when none arrived.
func (t *PeerTable) current() *planTable {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.table
}

// readFromAPI records that the reconciler has planned from the API: the
// tables of others are dropped, and this speaker's own reading is handed
// out from now on.
func (t *PeerTable) readFromAPI() {
	if t.fromAPI.Swap(true) {
		return
	}
	t.mu.Lock()
	had := t.table != nil
	t.received, t.table = nil, nil
	t.mu.Unlock()
	if had {
		t.o.Log.Info("the API server answers: planning from it, no longer from the table another speaker gave")
	}
}

// read lists the plan's objects from the caches.
func (t *PeerTable) read(ctx context.Context) (*planTable, error) {
	var pools barelbv1beta1.IPAddressPoolList
	if err := t.o.Reader.List(ctx, &pools, client.InNamespace(t.o.Namespace)); err != nil {
		return nil, fmt.Errorf("listing IPAddressPools: %w", err)
	}
	var advs barelbv1beta1.L2AdvertisementList
	if err := t.o.Reader.List(ctx, &advs, client.InNamespace(t.o.Namespace)); err != nil {
		return nil, fmt.Errorf("listing L2Advertisements: %w", err)
	}
	var nodes corev1.NodeList
	if err := t.o.Reader.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	out := &planTable{ReadBy: t.o.Node, Pools: pools.Items, Advertisements: advs.Items, Nodes: nodes.Items,
		ServiceRecords: t.o.Services.Services(), Endpoints: map[string][]string{}, AnnouncedBy: map[string]string{}}
	version := func(rv string) {
		if v, err := strconv.ParseUint(rv, 10, 64); err == nil && v > out.Version {
			out.Version = v
		}
	}
	for i := range out.Pools {
		out.Pools[i].ManagedFields = nil
		version(out.Pools[i].ResourceVersion)
	}
	for i := range out.Advertisements {
		out.Advertisements[i].ManagedFields = nil
		version(out.Advertisements[i].ResourceVersion)
	}
	for i := range out.Nodes {
		version(out.Nodes[i].ResourceVersion)
	}
	for _, svc := range out.ServiceRecords {
		version(svc.ResourceVersion)
		if !svc.LocalTraffic {
			continue
		}
		for n := range t.o.Services.EndpointNodes(svc.Key()) {
			out.Endpoints[svc.Key()] = append(out.Endpoints[svc.Key()], n)
		}
	}
	t.o.Services.EachStatus(func(s *servicecache.Status) {
		if s.Status.Node != "" {
			out.AnnouncedBy[s.Status.ServiceNamespace+"/"+s.Status.ServiceName] = s.Status.Node
		}
	})
	return out, nil
}

// joinStateAsker is a membership that can ask other members for their
// join state (MemberlistMembers).
type joinStateAsker interface {
	RequestJoinState(n int) int
}

// RequestJoinState asks up to n other speakers for their plan tables.
func (m *MemberlistMembers) RequestJoinState(n int) int { return m.Membership.RequestJoinState(n) }

// How the speaker plans from a peer's table until the API server answers:
// it looks at the membership every peerPlanPoll (a speaker death must fail
// over at once, and memberlist's change channel belongs to the
// reconciler's watch), plans anyway every peerReplan (contests re-checked,
// interfaces re-read), and asks for a table every peerTableAsk while it
// has none.
const (
	peerPlanPoll = 20 * time.Millisecond
	peerReplan   = time.Second
	peerTableAsk = time.Second
	// peerTableAskMembers is how many members one request asks.
	peerTableAskMembers = 3
)

// planFromPeers plans from the table another speaker gave, until the
// reconciler has planned from the API (then it returns): a speaker that
// starts while the API server is away is elected, and takes over
// addresses, once it knows the assignments. Without a table it is not
// ready, and the others do not elect it.
func (r *Reconciler) planFromPeers(ctx context.Context) {
	poll := time.NewTicker(peerPlanPoll)
	defer poll.Stop()
	var (
		lastTable         *planTable
		lastAlive         map[string]bool
		lastPlan, lastAsk time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-r.Peers.arrived:
		}
		if r.Peers.fromAPI.Load() {
			return
		}
		table := r.Peers.current()
		if table == nil {
			if asker, ok := r.Members.(joinStateAsker); ok && time.Since(lastAsk) >= peerTableAsk {
				lastAsk = time.Now()
				asker.RequestJoinState(peerTableAskMembers)
			}
			continue
		}
		alive, ok := r.Members.Alive()
		if !ok || (table == lastTable && maps.Equal(alive, lastAlive) && time.Since(lastPlan) < peerReplan) {
			continue
		}
		lastTable, lastAlive, lastPlan = table, alive, time.Now()
		if err := r.planFromTable(ctx, table, alive); err != nil && ctx.Err() == nil {
			r.Log.Error(err, "planning from another speaker's table")
		}
	}
}

// planFromTable makes a plan from a peer's table; a plan from the API
// that came first wins.
func (r *Reconciler) planFromTable(ctx context.Context, table *planTable, alive map[string]bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Peers.fromAPI.Load() {
		return nil
	}
	in := inputsFrom(table.Pools, table.Advertisements, table.Nodes, table, r.LBClass, alive, true, r.DrainOnCordon)
	_, err := r.planAndApply(ctx, in, alive, true, table.lastAnnouncers(), false)
	return err
}
