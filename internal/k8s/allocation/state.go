package allocation

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/allocator"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/metrics"
)

// state is what the reconcilers share: the allocator and the pools it was
// given. One lock guards it; API calls are made outside it, so reconcilers
// run in parallel except for the (fast, in-memory) decision.
type state struct {
	reader client.Reader
	// apiReader reads from the API server itself, not the cache: the
	// start-up load must see every status written so far, including a
	// previous leader's last writes that the cache may not have yet.
	apiReader client.Reader
	namespace string
	lbClass   string
	log       logr.Logger
	metrics   *metrics.Controller

	mu    sync.Mutex
	alloc *allocator.Allocator
	// pools are the pools in force, in the order they are tried.
	pools []*config.Pool
	// inForce holds each pool's definition in force by name: its spec,
	// or the last valid definition while an edit is refused.
	inForce map[string]*config.Pool
	// invalid says why each pool whose spec is refused is.
	invalid map[string]string
	// overlaps names, for each pool, the pools sharing addresses with it.
	overlaps map[string][]string
	// fingerprint identifies the pool objects pools were built from.
	fingerprint string
	// loaded is set once every existing assignment has been recorded.
	loaded bool
	// failures holds each failing Service's last failure, so that a
	// Service is told once per new failure, not on every reconcile.
	failures map[string]string
}

func newState(reader, apiReader client.Reader, namespace, lbClass string, log logr.Logger, m *metrics.Controller) *state {
	return &state{
		reader: reader, apiReader: apiReader, namespace: namespace, lbClass: lbClass, log: log, metrics: m,
		alloc: allocator.New(), inForce: map[string]*config.Pool{}, invalid: map[string]string{}, overlaps: map[string][]string{},
		failures: map[string]string{},
	}
}

// syncLocked brings the pools up to date with the cache and, the first
// time, loads every existing assignment. The caller holds mu.
func (s *state) syncLocked(ctx context.Context) error {
	if err := s.syncPoolsLocked(ctx); err != nil {
		return err
	}
	if !s.loaded {
		if err := s.loadLocked(ctx); err != nil {
			return err
		}
		s.loaded = true
	}
	return nil
}

// syncPoolsLocked rebuilds the pools when any pool object changed. Listing
// a handful of pools from the cache on each reconcile is cheaper than
// keeping a second copy of them in step.
func (s *state) syncPoolsLocked(ctx context.Context) error {
	var list barelbv1beta1.IPAddressPoolList
	if err := s.reader.List(ctx, &list, client.InNamespace(s.namespace)); err != nil {
		return fmt.Errorf("listing IPAddressPools: %w", err)
	}
	parts := make([]string, 0, len(list.Items))
	for i := range list.Items {
		parts = append(parts, list.Items[i].Name+"@"+list.Items[i].ResourceVersion)
	}
	sort.Strings(parts)
	fingerprint := strings.Join(parts, ",")
	if fingerprint == s.fingerprint {
		return nil
	}
	objs := make([]*barelbv1beta1.IPAddressPool, len(list.Items))
	for i := range list.Items {
		objs[i] = &list.Items[i]
	}
	pools := make([]*config.Pool, 0, len(list.Items))
	inForce := make(map[string]*config.Pool, len(list.Items))
	invalid := map[string]string{}
	for _, r := range config.ResolvePools(objs, s.inForce) {
		if r.Problem != "" {
			invalid[r.Name] = r.Problem
			if s.invalid[r.Name] != r.Problem {
				s.log.Info("IPAddressPool spec refused", "pool", r.Name, "reason", r.Problem)
			}
		}
		if r.InForce != nil {
			pools = append(pools, r.InForce)
			inForce[r.Name] = r.InForce
		}
	}
	config.SortPools(pools)
	apiPools := make([]allocator.Pool, len(pools))
	for i, p := range pools {
		apiPools[i] = allocator.Pool{Name: p.Name, Ranges: p.Ranges, AvoidBuggyIPs: p.AvoidBuggyIPs}
	}
	s.alloc.SetPools(apiPools)
	s.pools, s.inForce, s.invalid, s.overlaps, s.fingerprint = pools, inForce, invalid, config.Overlaps(pools), fingerprint
	return nil
}

// loadLocked records every address Services hold now, before anything new
// is handed out, so that no restart or leader change moves an address. When
// two Services claim one address, the older (then the first by name) keeps
// it; the other is given a new one when it is reconciled.
func (s *state) loadLocked(ctx context.Context) error {
	start := time.Now()
	var list corev1.ServiceList
	if err := s.apiReader.List(ctx, &list); err != nil {
		return fmt.Errorf("listing Services: %w", err)
	}
	services := make([]*corev1.Service, 0, len(list.Items))
	for i := range list.Items {
		if config.ServesService(&list.Items[i], s.lbClass) && len(list.Items[i].Status.LoadBalancer.Ingress) > 0 {
			services = append(services, &list.Items[i])
		}
	}
	// A Service whose annotations cannot be read is loaded after the
	// others, as Unreadable: the sharing rules cannot be checked for it,
	// so it keeps what its status says next to the partners loaded
	// before it, and they are not moved for it. Loaded as a Service
	// without a sharing key instead, it would either push its partners
	// to new addresses or lose its own claim, and the address it still
	// shows could be handed to a third Service.
	type loading struct {
		svc *corev1.Service
		as  allocator.Service
	}
	all := make([]loading, 0, len(services))
	for _, svc := range services {
		key := client.ObjectKeyFromObject(svc).String()
		req, err := config.ParseServiceRequest(svc)
		as := serviceFromRequest(key, req)
		// Its owner gets an Event when it is reconciled.
		as.Unreadable = err != nil
		all = append(all, loading{svc: svc, as: as})
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].as.Unreadable != all[j].as.Unreadable {
			return !all[i].as.Unreadable
		}
		return olderFirst(all[i].svc, all[j].svc)
	})
	loaded := 0
	for _, l := range all {
		svc, key := l.svc, l.as.Key
		for _, ip := range ingressAddresses(svc) {
			if err := s.alloc.Assign(l.as, ip, true); err != nil {
				s.metrics.AssignmentConflicts.Inc()
				s.log.Info("address claimed by two Services; the older keeps it", "service", key, "address", ip.String(), "reason", err.Error())
				continue
			}
			loaded++
		}
	}
	s.log.Info("loaded existing assignments", "services", len(services), "addresses", loaded, "duration", time.Since(start).String())
	return nil
}

func olderFirst(a, b *corev1.Service) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// ingressAddresses reads the addresses in a Service's status.
func ingressAddresses(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

// decideFor runs the decision for one Service under the lock. recorded
// is the pool its barelb.io/ip-allocated-from-pool annotation names.
func (s *state) decideFor(ctx context.Context, key, ns string, nsLabels, svcLabels labels.Set, req config.ServiceRequest, recorded string) (d decision, pools []string, freed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx); err != nil {
		return decision{}, nil, false, err
	}
	before := s.alloc.Addresses(key)
	// While the pool a Service's addresses came from is refused, it keeps
	// them, whatever the definition in force: a refused edit, or a pool
	// barelb knows no valid definition of (after a restart), costs no
	// address.
	keepHeld := recorded != "" && s.invalid[recorded] != "" && (req.Pool == "" || req.Pool == recorded)
	d = decide(s.alloc, s.pools, key, ns, nsLabels, svcLabels, req, keepHeld)
	if keepHeld && len(d.Addresses) > 0 && d.Pool == "" {
		d.Pool = recorded
	}
	if d.Failure != nil {
		d.FailureIsNew = s.noteFailureLocked(key, d.Failure)
	} else {
		delete(s.failures, key)
	}
	s.countWaitingLocked()
	after := s.alloc.Addresses(key)
	for _, ip := range before {
		freed = freed || !slices.Contains(after, ip)
	}
	return d, s.poolsOfLocked(append(before, after...)), freed, nil
}

// held is what the allocator holds for a Service, in its family order,
// and the pool the first address belongs to: what its status says when
// its request cannot be read and nothing is decided anew.
func (s *state) held(ctx context.Context, key string, families []corev1.IPFamily) ([]netip.Addr, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx); err != nil {
		return nil, "", err
	}
	addrs := s.alloc.Addresses(key)
	sort.SliceStable(addrs, func(i, j int) bool {
		return slices.Index(families, config.FamilyOf(addrs[i])) < slices.Index(families, config.FamilyOf(addrs[j]))
	})
	if len(addrs) == 0 {
		return nil, "", nil
	}
	return addrs, s.alloc.PoolOf(addrs[0]), nil
}

// failing lists the Services whose last reconcile left them short of an
// address, to retry when addresses are freed.
func (s *state) failing() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.failures))
	for k := range s.failures {
		keys = append(keys, k)
	}
	return keys
}

// noteFailure records a Service's failure and tells whether it is new.
func (s *state) noteFailure(key string, f *failure) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.noteFailureLocked(key, f)
}

func (s *state) noteFailureLocked(key string, f *failure) bool {
	text := f.Error()
	if s.failures[key] == text {
		return false
	}
	s.failures[key] = text
	s.countWaitingLocked()
	return true
}

// countWaitingLocked sets the gauge of Services waiting for an address:
// failing and holding none (a Service whose annotation cannot be read
// fails too, but keeps its address). It walks the failing Services only.
func (s *state) countWaitingLocked() {
	waiting := 0
	for key := range s.failures {
		if len(s.alloc.Addresses(key)) == 0 {
			waiting++
		}
	}
	s.metrics.ServicesWaiting.Set(float64(waiting))
}

// release frees a Service's addresses and names the pools they were in.
func (s *state) release(ctx context.Context, key string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx); err != nil {
		return nil, err
	}
	held := s.alloc.Addresses(key)
	s.alloc.Release(key)
	delete(s.failures, key)
	s.countWaitingLocked()
	return s.poolsOfLocked(held), nil
}

// poolsOfLocked names every pool containing any of ips.
func (s *state) poolsOfLocked(ips []netip.Addr) []string {
	var out []string
	seen := map[string]bool{}
	for _, ip := range ips {
		for _, p := range s.pools {
			if !seen[p.Name] && p.Set.Contains(ip) {
				seen[p.Name] = true
				out = append(out, p.Name)
			}
		}
	}
	return out
}

// poolReport is what a pool's status says.
type poolReport struct {
	stats    allocator.Stats
	found    bool
	invalid  string
	overlaps []string
	// inForce are the addresses in force as written; nil when none.
	inForce []string
}

func (s *state) report(ctx context.Context, pool string) (poolReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx); err != nil {
		return poolReport{}, err
	}
	stats, found := s.alloc.Stats(pool)
	r := poolReport{stats: stats, found: found, invalid: s.invalid[pool], overlaps: s.overlaps[pool]}
	if p := s.inForce[pool]; p != nil {
		r.inForce = slices.Clone(p.Addresses)
	}
	return r, nil
}
