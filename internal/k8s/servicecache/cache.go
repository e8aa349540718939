package servicecache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/listretry"
)

// DefaultPageSize is how many objects one list request reads: the initial
// list of 10,000 Services is never decoded in one piece.
const DefaultPageSize = 500

// Options say what a Cache watches.
type Options struct {
	// StatusNamespace, when set, makes the Cache keep the ServiceL2Status
	// objects of that namespace (layer-2 mode's reports) too.
	StatusNamespace string
	Log             logr.Logger
	// PageSize is how many objects a list request reads; DefaultPageSize
	// when 0.
	PageSize int64
}

// Cache holds the records. Start it (it is a manager.Runnable) and wait
// for WaitForSync before reading: until then it may miss objects.
type Cache struct {
	opts Options
	// core and discovery are typed clients of their groups alone: the
	// whole clientset links every group's client into the speaker.
	core      corev1client.CoreV1Interface
	discovery discoveryv1client.DiscoveryV1Interface
	barelb    client.WithWatch
	pending   atomic.Int32 // stores not synced yet

	mu       sync.RWMutex
	services map[string]*Service       // namespace/name →
	slices   map[string]*endpointSlice // slice namespace/name →
	// sliceOf are the slices with ready endpoints of each Service.
	sliceOf  map[string][]string
	statuses map[string]*Status // name → (one namespace)
	synced   chan struct{}

	imu     sync.Mutex
	strings map[string]string // interned: namespaces, pools, node names…

	smu         sync.Mutex
	subscribers []chan event.GenericEvent
}

// New builds a Cache reading from the API server of cfg. Services and
// EndpointSlices are read as protobuf, which decodes with far less garbage
// than JSON.
func New(cfg *rest.Config, opts Options) (*Cache, error) {
	if cfg == nil {
		return nil, errors.New("service cache: no API server configuration")
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	pb := rest.CopyConfig(cfg)
	pb.ContentType = "application/vnd.kubernetes.protobuf"
	pb.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	core, err := corev1client.NewForConfig(pb)
	if err != nil {
		return nil, fmt.Errorf("service cache: %w", err)
	}
	discovery, err := discoveryv1client.NewForConfig(pb)
	if err != nil {
		return nil, fmt.Errorf("service cache: %w", err)
	}
	c := &Cache{
		opts: opts, core: core, discovery: discovery,
		services: map[string]*Service{}, slices: map[string]*endpointSlice{}, sliceOf: map[string][]string{},
		statuses: map[string]*Status{}, strings: map[string]string{}, synced: make(chan struct{}),
	}
	if opts.StatusNamespace != "" {
		// Only ServiceL2Status goes through this client: a scheme of
		// barelb's types alone, not a second copy of every built-in
		// group's registrations (2 MiB of heap).
		scheme := runtime.NewScheme()
		if err := barelbv1beta1.AddToScheme(scheme); err != nil {
			return nil, fmt.Errorf("service cache: %w", err)
		}
		if c.barelb, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
			return nil, fmt.Errorf("service cache: %w", err)
		}
	}
	return c, nil
}

// Subscribe returns a channel that receives an event after changes that
// readers may care about: a Service or the ready nodes of a Service's
// endpoints changed, a ServiceL2Status was deleted, or the cache synced.
// A burst of changes may make one event. Give it to controller-runtime's
// source.Channel.
func (c *Cache) Subscribe() <-chan event.GenericEvent {
	ch := make(chan event.GenericEvent, 1)
	c.smu.Lock()
	c.subscribers = append(c.subscribers, ch)
	c.smu.Unlock()
	return ch
}

func (c *Cache) notify() {
	c.smu.Lock()
	defer c.smu.Unlock()
	for _, ch := range c.subscribers {
		select {
		case ch <- event.GenericEvent{Object: &corev1.Service{}}:
		default: // one is pending already
		}
	}
}

// NeedLeaderElection: every speaker runs its cache.
func (c *Cache) NeedLeaderElection() bool { return false }

// Start watches until ctx ends.
func (c *Cache) Start(ctx context.Context) error {
	type source struct {
		name     string
		lw       *toolscache.ListWatch
		expected runtime.Object
		store    *store
	}
	sources := []source{
		{"Services", c.listWatch(ctx, c.listServices, func(o metav1.ListOptions) (watch.Interface, error) {
			return c.core.Services("").Watch(ctx, o)
		}), &corev1.Service{}, &store{c: c, kind: kindService}},
		{"EndpointSlices", c.listWatch(ctx, c.listSlices, func(o metav1.ListOptions) (watch.Interface, error) {
			return c.discovery.EndpointSlices("").Watch(ctx, o)
		}), &discoveryv1.EndpointSlice{}, &store{c: c, kind: kindSlice}},
	}
	if c.barelb != nil {
		sources = append(sources, source{"ServiceL2Statuses", c.listWatch(ctx, c.listStatuses, func(o metav1.ListOptions) (watch.Interface, error) {
			return c.barelb.Watch(ctx, &barelbv1beta1.ServiceL2StatusList{}, client.InNamespace(c.opts.StatusNamespace), &client.ListOptions{Raw: &o})
		}), &barelbv1beta1.ServiceL2Status{}, &store{c: c, kind: kindStatus}})
	}
	c.pending.Store(int32(len(sources)))
	var wg sync.WaitGroup
	go func() {
		if c.WaitForSync(ctx) {
			c.mu.RLock()
			c.opts.Log.Info("service cache synced", "services", len(c.services), "endpointSlicesWithReadyEndpoints", len(c.slices), "statuses", len(c.statuses))
			c.mu.RUnlock()
		}
	}()
	for _, s := range sources {
		// A speaker started while the API server is away fills its cache
		// as soon as the server is back, not after the reflector's backoff.
		r := toolscache.NewReflectorWithOptions(listretry.Wrap(s.lw, listretry.Options{}), s.expected, s.store, toolscache.ReflectorOptions{Name: "servicecache " + s.name})
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(ctx.Done()) }()
	}
	wg.Wait()
	return nil
}

// HasSynced tells whether every watched kind has been listed once.
func (c *Cache) HasSynced() bool {
	select {
	case <-c.synced:
		return true
	default:
		return false
	}
}

// WaitForSync waits until the cache has synced; false when ctx ended
// first.
func (c *Cache) WaitForSync(ctx context.Context) bool {
	select {
	case <-c.synced:
		return true
	case <-ctx.Done():
		return false
	}
}

// ReadyCheck is a readiness check (healthz.Checker) that passes once the
// cache has synced.
func (c *Cache) ReadyCheck(*http.Request) error {
	if !c.HasSynced() {
		return errors.New("the service cache has not synced yet")
	}
	return nil
}

// Services returns every LoadBalancer Service (any class), in no order.
func (c *Cache) Services() []*Service {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Service, 0, len(c.services))
	for _, s := range c.services {
		out = append(out, s)
	}
	return out
}

// Service returns a Service by namespace/name; nil when it is not a known
// LoadBalancer Service.
func (c *Cache) Service(key string) *Service {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.services[key]
}

// EndpointNodes names the nodes holding a ready endpoint of the Service
// namespace/name (key), from all its EndpointSlices.
func (c *Cache) EndpointNodes(key string) map[string]bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := map[string]bool{}
	for _, name := range c.sliceOf[key] {
		for _, n := range c.slices[name].nodes {
			out[n] = true
		}
	}
	return out
}

// Statuses returns the ServiceL2Status records by name (nil without
// Options.StatusNamespace). The map is the caller's; the records are
// shared.
func (c *Cache) Statuses() map[string]*Status {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]*Status, len(c.statuses))
	for name, s := range c.statuses {
		out[name] = s
	}
	return out
}

// Status returns the ServiceL2Status record of that name; nil when there
// is none (or without Options.StatusNamespace).
func (c *Cache) Status(name string) *Status {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.statuses[name]
}

// EachStatus calls fn with every ServiceL2Status record, holding the
// cache's read lock: fn must not call the cache.
func (c *Cache) EachStatus(fn func(*Status)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, s := range c.statuses {
		fn(s)
	}
}

// intern returns one shared copy of s: namespaces, pool, class, node and
// interface names repeat across thousands of records. The set is small
// (bounded by the cluster's namespaces, nodes and pools) and kept for the
// life of the cache.
func (c *Cache) intern(s string) string {
	if s == "" {
		return ""
	}
	c.imu.Lock()
	defer c.imu.Unlock()
	if v, ok := c.strings[s]; ok {
		return v
	}
	c.strings[s] = s
	return s
}
