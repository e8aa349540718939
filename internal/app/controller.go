package app

import (
	"context"
	"flag"
	"fmt"
	"reflect"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/barelb/barelb/internal/k8s/allocation"
	"github.com/barelb/barelb/internal/k8s/announcement"
	"github.com/barelb/barelb/internal/k8s/memberlistkey"
	"github.com/barelb/barelb/internal/k8s/webhook"
	"github.com/barelb/barelb/internal/k8s/wrongnamespace"
	"github.com/barelb/barelb/internal/metrics"
	"github.com/barelb/barelb/internal/servingcert"
)

// The controller's defaults.
const (
	ControllerMetricsBindAddress     = ":7472"
	ControllerHealthProbeBindAddress = ":7474"
	// ControllerLeaseName is the coordination.k8s.io Lease, in the
	// --namespace, that controller replicas compete for.
	ControllerLeaseName = "barelb-controller"

	// ControllerKubeAPIQPS and ControllerKubeAPIBurst are the controller's
	// client limits. It makes one write per Service from at most 16
	// workers, so concurrency, not this limit, paces it; the limit is a
	// guard against a runaway loop, high enough not to cap a burst of
	// thousands of new Services below what the API server itself takes
	// (700-1,200 writes/s measured on a 2-core test machine). The API
	// server's priority and fairness protects it from the rest.
	ControllerKubeAPIQPS   = 1000
	ControllerKubeAPIBurst = 2000
)

// ControllerOptions are the controller's settings.
type ControllerOptions struct {
	Options
	// LeaderElect makes replicas elect one leader to allocate addresses,
	// so that two never hand out the same address at once.
	LeaderElect bool
	// LoadBalancerClass is the spec.loadBalancerClass served; empty serves
	// Services without one.
	LoadBalancerClass string
	// MemberlistSecret is the Secret in --namespace the controller creates
	// with a random memberlist key when it is missing; empty creates none.
	MemberlistSecret string
	// Webhook configures the validating admission webhook.
	Webhook WebhookOptions
}

// WebhookOptions configure the admission webhook every controller replica
// serves (see internal/k8s/webhook).
type WebhookOptions struct {
	// Disable turns the webhook off: no server, no certificate.
	Disable bool
	// Port is the HTTPS port on every address; 0 picks a free one.
	Port int
	// CertSecret, Configuration and Service name the certificate Secret,
	// the ValidatingWebhookConfiguration whose caBundle the controller
	// writes, and the Service (in --namespace) the API server calls.
	CertSecret, Configuration, Service string
	// CertNamespace holds the certificate Secret; empty means --namespace.
	// The install manifests keep it out of --namespace, whose Secrets the
	// speakers may read (BGP passwords), so that a speaker cannot read the
	// webhook's CA key: RBAC has no "all Secrets but this one".
	CertNamespace string
	// CertLifetime is the serving certificate's; it is renewed when a
	// third of it remains.
	CertLifetime time.Duration
}

func (w *WebhookOptions) bindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&w.Disable, "disable-webhook", w.Disable,
		"Do not serve the validating admission webhook (and make no certificate for it).")
	fs.IntVar(&w.Port, "webhook-port", w.Port, "HTTPS port of the admission webhook; 0 picks a free port.")
	fs.StringVar(&w.CertSecret, "webhook-cert-secret", w.CertSecret,
		"Secret holding the webhook's CA and serving certificate; created and renewed by the controller.")
	fs.StringVar(&w.CertNamespace, "webhook-cert-namespace", w.CertNamespace,
		"Namespace of --webhook-cert-secret; empty means --namespace. Keep it where the speakers cannot read Secrets "+
			"(the install manifests use "+webhook.DefaultSecretNamespace+").")
	fs.StringVar(&w.Configuration, "webhook-configuration", w.Configuration,
		"ValidatingWebhookConfiguration whose webhooks get the CA bundle.")
	fs.StringVar(&w.Service, "webhook-service", w.Service,
		"Service in --namespace the API server calls the webhook through; the certificate is made for its DNS names.")
	fs.DurationVar(&w.CertLifetime, "webhook-cert-lifetime", w.CertLifetime,
		"Lifetime of the webhook's serving certificate; it is renewed when a third of it remains.")
}

func (w *WebhookOptions) validate() error {
	if w.Disable {
		return nil
	}
	if w.Port < 0 || w.Port > 65535 {
		return usageErrorf("--webhook-port %d: want a port number from 0 to 65535", w.Port)
	}
	for _, f := range []struct{ flag, value string }{
		{"--webhook-cert-secret", w.CertSecret}, {"--webhook-configuration", w.Configuration},
	} {
		if errs := validation.IsDNS1123Subdomain(f.value); len(errs) > 0 {
			return usageErrorf("%s %q is not an object name: %v", f.flag, f.value, errs)
		}
	}
	if w.CertNamespace != "" {
		if errs := validation.IsDNS1123Label(w.CertNamespace); len(errs) > 0 {
			return usageErrorf("--webhook-cert-namespace %q is not a namespace name: %v", w.CertNamespace, errs)
		}
	}
	if errs := validation.IsDNS1035Label(w.Service); len(errs) > 0 {
		return usageErrorf("--webhook-service %q is not a Service name: %v", w.Service, errs)
	}
	if w.CertLifetime < time.Minute {
		return usageErrorf("--webhook-cert-lifetime %s: want at least 1m", w.CertLifetime)
	}
	return nil
}

func parseController(inv Invocation) (ControllerOptions, error) {
	o := ControllerOptions{
		Options:          DefaultOptions(ControllerMetricsBindAddress, ControllerHealthProbeBindAddress),
		LeaderElect:      true,
		MemberlistSecret: memberlistkey.DefaultSecretName,
		Webhook: WebhookOptions{
			Port:          webhook.DefaultPort,
			CertSecret:    webhook.DefaultSecretName,
			Configuration: webhook.DefaultConfigurationName,
			Service:       webhook.DefaultServiceName,
			CertLifetime:  servingcert.DefaultCertLifetime,
		},
	}
	o.KubeAPIQPS, o.KubeAPIBurst = ControllerKubeAPIQPS, ControllerKubeAPIBurst
	err := parseFlags("controller", inv, &o.Options, func(fs *flag.FlagSet) {
		fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect,
			"Elect one active controller among the replicas through the Lease "+ControllerLeaseName+" in --namespace. "+
				"Turn off only when a single replica can run.")
		fs.StringVar(&o.LoadBalancerClass, "lb-class", o.LoadBalancerClass,
			"Serve only Services with this spec.loadBalancerClass. Empty serves Services without a class.")
		fs.StringVar(&o.MemberlistSecret, "memberlist-secret", o.MemberlistSecret,
			"Secret in --namespace holding the speakers' memberlist key (data key \""+memberlistkey.DataKey+"\"); "+
				"created with a random key when missing. Empty: create none.")
		o.Webhook.bindFlags(fs)
	})
	if err == nil && !o.ShowVersion {
		err = o.Webhook.validate()
	}
	return o, err
}

// RunController runs the controller, which allocates addresses to
// LoadBalancer Services, until ctx ends. Its error goes to Exit.
func RunController(ctx context.Context, inv Invocation) error {
	o, err := parseController(inv)
	if err != nil {
		return err
	}
	if o.ShowVersion {
		return printVersion(inv, "controller")
	}
	return start(ctx, inv, startup{
		program:   "controller",
		options:   o.Options,
		logValues: []any{"leaderElect", o.LeaderElect, "lbClass", o.LoadBalancerClass, "webhook", !o.Webhook.Disable},
		manager: []Option{
			WithManagerOptions(func(mo *manager.Options) {
				mo.LeaderElection = o.LeaderElect
				mo.LeaderElectionID = ControllerLeaseName
				mo.LeaderElectionNamespace = o.Namespace
				// Hand the Lease over on SIGTERM rather than make the next
				// leader wait for it to expire. Safe because the process
				// exits as soon as the manager returns.
				mo.LeaderElectionReleaseOnCancel = true
				// Configuration kinds are watched everywhere so that an
				// object created in the wrong namespace can be told it is
				// ignored.
				config := map[reflect.Type]bool{}
				for _, obj := range configObjects() {
					config[reflect.TypeOf(obj)] = true
				}
				for obj := range mo.Cache.ByObject {
					if config[reflect.TypeOf(obj)] {
						delete(mo.Cache.ByObject, obj)
					}
				}
			}),
			WithReadyAfterSync(configObjects()...),
		},
		setup: func(mgr manager.Manager) error {
			m, err := metrics.NewController(ctrlmetrics.Registry)
			if err != nil {
				return err
			}
			if err := wrongnamespace.Setup(mgr, o.Namespace); err != nil {
				return err
			}
			if o.MemberlistSecret != "" {
				if err := mgr.Add(ensureMemberlistSecret(mgr, o.Namespace, o.MemberlistSecret)); err != nil {
					return err
				}
			}
			if !o.Webhook.Disable {
				if _, err := webhook.Setup(mgr, webhook.Options{
					Namespace:         o.Namespace,
					BindAddress:       fmt.Sprintf(":%d", o.Webhook.Port),
					SecretName:        o.Webhook.CertSecret,
					SecretNamespace:   o.Webhook.CertNamespace,
					ConfigurationName: o.Webhook.Configuration,
					ServiceName:       o.Webhook.Service,
					CertLifetime:      o.Webhook.CertLifetime,
				}); err != nil {
					return err
				}
			}
			if err := allocation.Setup(mgr, allocation.Options{
				Namespace:         o.Namespace,
				LoadBalancerClass: o.LoadBalancerClass,
				Metrics:           m,
			}); err != nil {
				return err
			}
			_, err = announcement.Setup(ctx, mgr, announcement.Options{Namespace: o.Namespace, LoadBalancerClass: o.LoadBalancerClass})
			return err
		},
	})
}

// ensureMemberlistSecret creates the memberlist Secret once the controller
// leads, retrying while the API server refuses (say, RBAC not yet applied).
func ensureMemberlistSecret(mgr manager.Manager, namespace, name string) manager.Runnable {
	log := mgr.GetLogger().WithName("memberlist-secret")
	return manager.RunnableFunc(func(ctx context.Context) error {
		for {
			_, err := memberlistkey.Ensure(ctx, mgr.GetAPIReader(), mgr.GetClient(), namespace, name, log)
			if err == nil {
				return nil
			}
			log.Error(err, "speakers cannot start without the memberlist Secret; retrying in 10s")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Second):
			}
		}
	})
}
