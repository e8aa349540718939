package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/listretry"
	barelbscheme "github.com/barelb/barelb/internal/scheme"
)

// Names of the checks served under /healthz and /readyz.
const (
	healthCheckName = "ping"
	readyCheckName  = "caches-synced"
)

// NewScheme returns a scheme with client-go's built-in types and barelb's.
func NewScheme() (*runtime.Scheme, error) { return barelbscheme.New() }

// RESTConfig finds the API server the way controller-runtime does (see
// Options.Kubeconfig) and applies the rate limits and userAgent, which
// shows up in the API server's audit log and metrics.
//
// It reads --kubeconfig from o rather than from controller-runtime's global
// flag, which barelb never parses.
func (o *Options) RESTConfig(userAgent string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if o.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", o.Kubeconfig, err)
		}
	} else {
		cfg, err = config.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("finding the Kubernetes API server (no --kubeconfig given): %w", err)
		}
	}
	cfg.QPS = float32(o.KubeAPIQPS)
	cfg.Burst = o.KubeAPIBurst
	if userAgent != "" {
		cfg.UserAgent = userAgent
	}
	return cfg, nil
}

// Option changes what NewManager builds.
type Option func(*managerSettings)

type managerSettings struct {
	newScheme  func() (*runtime.Scheme, error)
	adjust     []func(*manager.Options)
	readyAfter []client.Object
	transforms map[client.Object]toolscache.TransformFunc
}

// WithScheme builds the manager's scheme with newScheme instead of
// NewScheme: the speaker's has only the built-in groups it reads.
func WithScheme(newScheme func() (*runtime.Scheme, error)) Option {
	return func(s *managerSettings) { s.newScheme = newScheme }
}

// WithManagerOptions lets a program change controller-runtime's options
// after NewManager has filled them in, to turn on leader election for
// example.
func WithManagerOptions(adjust func(*manager.Options)) Option {
	return func(s *managerSettings) { s.adjust = append(s.adjust, adjust) }
}

// WithReadyAfterSync makes /readyz wait until objects of these kinds are in
// the cache as well, so that a program reports ready only once it knows
// what it needs to act on. The kinds must be in the scheme.
func WithReadyAfterSync(objs ...client.Object) Option {
	return func(s *managerSettings) { s.readyAfter = append(s.readyAfter, objs...) }
}

// WithCacheTransforms makes the cache keep less: managed fields are
// stripped from every object, and objects of the kinds given are passed
// through their transform before they are stored (a transform must strip
// managed fields itself, and keep every field any reader of the cache
// uses). The speaker uses it to keep its memory small at 10,000 Services.
func WithCacheTransforms(transforms map[client.Object]toolscache.TransformFunc) Option {
	return func(s *managerSettings) {
		if s.transforms == nil {
			s.transforms = map[client.Object]toolscache.TransformFunc{}
		}
		for obj, t := range transforms {
			s.transforms[obj] = t
		}
	}
}

// NewManager builds a controller-runtime manager for barelb:
//
//   - the scheme has client-go's types and barelb.io/v1beta1 (see
//     WithScheme);
//   - the cache holds barelb.io objects from o.Namespace only, since those in
//     other namespaces do not count (other kinds are cached cluster-wide);
//   - metrics are served over HTTP on o.MetricsBindAddress;
//   - o.HealthProbeBindAddress serves /healthz, which answers as soon as the
//     process serves HTTP, and /readyz, which answers only once the caches
//     have synced (see WithReadyAfterSync) and until the manager stops. It
//     does not wait for leader election: a standby controller is ready too.
//
// Its client is not rate-limited by NewManager: cfg carries the limits.
func NewManager(cfg *rest.Config, o Options, opts ...Option) (manager.Manager, error) {
	if cfg == nil {
		return nil, errors.New("building the manager: no API server configuration")
	}
	var settings managerSettings
	for _, opt := range opts {
		opt(&settings)
	}
	newScheme := NewScheme
	if settings.newScheme != nil {
		newScheme = settings.newScheme
	}
	scheme, err := newScheme()
	if err != nil {
		return nil, err
	}
	byObject, err := namespacedBarelbObjects(scheme, o.Namespace)
	if err != nil {
		return nil, err
	}
	cacheOpts := cache.Options{ByObject: byObject, NewInformer: patientInformer}
	if settings.transforms != nil {
		if err := addTransforms(&cacheOpts, scheme, settings.transforms); err != nil {
			return nil, err
		}
	}
	mo := manager.Options{
		Scheme:                 scheme,
		Metrics:                o.metricsServerOptions(),
		HealthProbeBindAddress: o.HealthProbeBindAddress,
		Cache:                  cacheOpts,
	}
	for _, adjust := range settings.adjust {
		adjust(&mo)
	}
	mgr, err := manager.New(cfg, mo)
	if err != nil {
		return nil, fmt.Errorf("building the manager: %w", err)
	}
	gate := &readyGate{cache: mgr.GetCache(), objs: settings.readyAfter}
	if err := mgr.Add(gate); err != nil {
		return nil, fmt.Errorf("adding the readiness gate: %w", err)
	}
	if err := mgr.AddHealthzCheck(healthCheckName, healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck(readyCheckName, gate.check); err != nil {
		return nil, fmt.Errorf("adding the readiness check: %w", err)
	}
	return mgr, nil
}

// metricsServerOptions serve metrics over plain HTTP, or with
// --metrics-secure over HTTPS behind controller-runtime's authentication
// and authorization filter: a caller needs a token the API server accepts
// and RBAC allowing "get" on the non-resource URL /metrics.
func (o *Options) metricsServerOptions() metricsserver.Options {
	mo := metricsserver.Options{BindAddress: o.MetricsBindAddress}
	if o.MetricsSecure {
		mo.SecureServing = true
		mo.FilterProvider = filters.WithAuthenticationAndAuthorization
		mo.CertDir = o.MetricsCertDir
		if mo.CertDir == "" {
			// A directory that holds no certificate: controller-runtime
			// then makes a self-signed one in memory. Its default
			// directory is shared by every program on the machine.
			mo.CertDir = "/nonexistent/barelb-metrics-certs"
		}
	}
	return mo
}

// namespacedBarelbObjects restricts every object kind of barelb.io/v1beta1
// in scheme to namespace. It reads the kinds from the scheme so that a kind
// added to the API later is restricted without anyone remembering to list
// it here.
func namespacedBarelbObjects(scheme *runtime.Scheme, namespace string) (map[client.Object]cache.ByObject, error) {
	byObject := map[client.Object]cache.ByObject{}
	for _, typ := range scheme.KnownTypes(barelbv1beta1.GroupVersion) {
		// Lists and the option and event types metav1 registers in every
		// group are not client.Objects: they have no ObjectMeta.
		obj, ok := reflect.New(typ).Interface().(client.Object)
		if !ok {
			continue
		}
		if _, isList := obj.(client.ObjectList); isList {
			continue
		}
		byObject[obj] = cache.ByObject{Namespaces: map[string]cache.Config{namespace: {}}}
	}
	if len(byObject) == 0 {
		return nil, fmt.Errorf("no object kinds of %s in the scheme", barelbv1beta1.GroupVersion)
	}
	return byObject, nil
}

// addTransforms strips managed fields from every object in the cache and
// sets the transforms of the kinds given, next to what opts.ByObject says
// of the same kinds already (barelb's namespace).
func addTransforms(opts *cache.Options, scheme *runtime.Scheme, transforms map[client.Object]toolscache.TransformFunc) error {
	opts.DefaultTransform = cache.TransformStripManagedFields()
	byGVK := map[schema.GroupVersionKind]client.Object{}
	for obj := range opts.ByObject {
		gvk, err := apiutil.GVKForObject(obj, scheme)
		if err != nil {
			return fmt.Errorf("cache options: %w", err)
		}
		byGVK[gvk] = obj
	}
	for obj, t := range transforms {
		gvk, err := apiutil.GVKForObject(obj, scheme)
		if err != nil {
			return fmt.Errorf("cache transform: %w", err)
		}
		if existing, ok := byGVK[gvk]; ok {
			obj = existing
		}
		byObject := opts.ByObject[obj]
		byObject.Transform = t
		opts.ByObject[obj] = byObject
	}
	return nil
}

// patientInformer is client-go's informer with a list that the API
// server's absence does not put into the reflector's backoff (package
// listretry): a program started during an API outage has its caches, and
// is ready, within a second or so of the server's return.
func patientInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	return toolscache.NewSharedIndexInformer(listretry.Wrap(lw, listretry.Options{}), obj, resync, indexers)
}

// readyGate is a Runnable that opens once the manager's caches have synced
// and closes when the manager stops, so that /readyz tells Kubernetes when
// the program knows the cluster's state. It runs whether or not this
// process leads: readiness must not depend on leadership, or a standby
// controller would never be ready and a rolling update would stall.
type readyGate struct {
	cache cache.Cache
	objs  []client.Object
	ready atomic.Bool
}

// NeedLeaderElection puts the gate among the runnables every replica runs;
// a Runnable without this method would wait for leadership.
func (g *readyGate) NeedLeaderElection() bool { return false }

// Start runs after the manager has started its caches and waited for the
// informers created so far; it adds the informers WithReadyAfterSync asked
// for and waits for every informer to sync.
func (g *readyGate) Start(ctx context.Context) error {
	for _, obj := range g.objs {
		// GetInformer blocks until the new informer has synced.
		if _, err := g.cache.GetInformer(ctx, obj); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("caching %T before reporting ready: %w", obj, err)
		}
	}
	if !g.cache.WaitForCacheSync(ctx) {
		// Only a stopping manager makes WaitForCacheSync give up.
		return nil
	}
	g.ready.Store(true)
	crlog.FromContext(ctx).Info("caches synced: ready")
	<-ctx.Done()
	g.ready.Store(false)
	return nil
}

func (g *readyGate) check(*http.Request) error {
	if !g.ready.Load() {
		return errors.New("caches have not synced yet, or the manager is stopping")
	}
	return nil
}
