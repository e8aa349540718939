package webhook

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/barelb/barelb/internal/servingcert"
)

// Defaults of the install manifests (config/webhook, config/rbac).
const (
	DefaultSecretName = "barelb-webhook-cert"
	// DefaultSecretNamespace is where the install manifests keep the
	// certificate Secret: a namespace of its own, which the speakers'
	// RBAC does not reach.
	DefaultSecretNamespace   = "barelb-webhook"
	DefaultConfigurationName = "barelb-validating-webhook"
	DefaultServiceName       = "barelb-webhook-service"
	DefaultPort              = 9443
	// DefaultInterval is how often a replica reads the certificate Secret
	// again; renewals happen weeks before expiry, so a minute is plenty.
	DefaultInterval      = time.Minute
	DefaultRetryInterval = 10 * time.Second
)

// Options configure the webhook.
type Options struct {
	// Namespace is barelb's namespace: where the Service lives, and the
	// only namespace whose objects are checked.
	Namespace string
	// SecretNamespace holds the certificate Secret; empty means Namespace.
	SecretNamespace string
	// BindAddress is host:port of the HTTPS server; port 0 picks a free
	// one.
	BindAddress string
	// SecretName, ConfigurationName and ServiceName name the certificate
	// Secret, the ValidatingWebhookConfiguration and the Service the API
	// server calls (the certificate is made for its DNS names).
	SecretName, ConfigurationName, ServiceName string
	// ExtraIPs are added to the certificate (tests that call the webhook
	// at a URL on 127.0.0.1).
	ExtraIPs []net.IP
	// CertLifetime and CALifetime default to servingcert's.
	CertLifetime, CALifetime time.Duration
	// Interval and RetryInterval default to DefaultInterval and
	// DefaultRetryInterval.
	Interval, RetryInterval time.Duration
	// BundleDelay defaults to DefaultBundleDelay (see CertKeeper).
	BundleDelay time.Duration
}

// DNSNames are the names the API server may dial the Service by.
func DNSNames(service, namespace string) []string {
	return []string{
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// Setup adds the certificate keeper and the HTTPS server to mgr (both run
// on every replica) and a readiness check that passes once the webhook
// serves. The handler reads Services through mgr's cache.
func Setup(mgr manager.Manager, o Options) (*Server, error) {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.SecretNamespace == "" {
		o.SecretNamespace = o.Namespace
	}
	log := mgr.GetLogger().WithName("webhook")
	certs := &CertKeeper{
		Namespace:         o.SecretNamespace,
		SecretName:        o.SecretName,
		ConfigurationName: o.ConfigurationName,
		Cert: servingcert.Options{
			DNSNames:     DNSNames(o.ServiceName, o.Namespace),
			IPAddresses:  o.ExtraIPs,
			CertLifetime: o.CertLifetime,
			CALifetime:   o.CALifetime,
		},
		Reader:        mgr.GetAPIReader(),
		Writer:        mgr.GetClient(),
		Interval:      o.Interval,
		RetryInterval: o.RetryInterval,
		BundleDelay:   o.BundleDelay,
		Log:           log.WithName("certificate"),
	}
	srv := &Server{
		BindAddress: o.BindAddress,
		Certs:       certs,
		Log:         log,
		Handler: &Validator{
			Namespace: o.Namespace,
			Live:      mgr.GetAPIReader(),
			Cache:     mgr.GetClient(),
			Writer:    mgr.GetClient(),
			Decoder:   admission.NewDecoder(mgr.GetScheme()),
			Log:       log,
		},
	}
	for _, r := range []manager.Runnable{certs, srv} {
		if err := mgr.Add(r); err != nil {
			return nil, fmt.Errorf("adding the webhook: %w", err)
		}
	}
	if err := mgr.AddReadyzCheck("webhook", func(*http.Request) error { return srv.Ready() }); err != nil {
		return nil, fmt.Errorf("adding the webhook's readiness check: %w", err)
	}
	return srv, nil
}
