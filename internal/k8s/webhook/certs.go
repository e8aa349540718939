package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/internal/servingcert"
)

// The data keys of the certificate Secret. tls.crt and tls.key make it a
// kubernetes.io/tls Secret that other tools understand.
const (
	keyCACert      = "ca.crt"
	keyCAKey       = "ca.key"
	keyCert        = corev1.TLSCertKey
	keyKey         = corev1.TLSPrivateKeyKey
	keyPreviousCAs = "ca-previous.crt"
)

// CertKeeper keeps the webhook's TLS material: it stores the CA and
// serving certificate in a Secret (making them when missing, renewing them
// when due), writes the CA bundle into every webhook of the
// ValidatingWebhookConfiguration, and hands the current serving
// certificate to the TLS server, which picks up a renewal at its next
// handshake without a restart.
//
// Every replica runs one. They agree through the API server: writes carry
// the resourceVersion read, so when two renew at once one write fails
// with a conflict and that replica reads the winner's certificate.
type CertKeeper struct {
	Namespace, SecretName, ConfigurationName string
	Cert                                     servingcert.Options
	// Reader reads the Secret and the configuration directly from the API
	// server: a cache would list and watch every Secret, which the
	// controller may not do.
	Reader client.Reader
	Writer client.Writer
	// Interval is how often the Secret is read again, to pick up another
	// replica's renewal and to repair an edited caBundle; renewals due
	// sooner wake the keeper earlier.
	Interval time.Duration
	// RetryInterval is the wait after a failure.
	RetryInterval time.Duration
	Log           logr.Logger

	current atomic.Pointer[tls.Certificate]
	// missingConfig remembers that the configuration was missing, so that
	// this is logged once rather than at every round.
	missingConfig bool
}

// errConflict means another replica wrote first; read again at once.
var errConflict = errors.New("another replica wrote first")

// GetCertificate is the tls.Config hook that serves the current
// certificate.
func (k *CertKeeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := k.current.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("the webhook has no serving certificate yet")
}

// Ready fails until a serving certificate is loaded.
func (k *CertKeeper) Ready() error {
	if k.current.Load() == nil {
		return errors.New("no serving certificate yet")
	}
	return nil
}

// NeedLeaderElection is false: every replica serves the webhook.
func (k *CertKeeper) NeedLeaderElection() bool { return false }

// Start keeps the certificate until ctx ends.
func (k *CertKeeper) Start(ctx context.Context) error {
	for {
		next, err := k.Sync(ctx)
		wait := time.Until(next)
		switch {
		case errors.Is(err, errConflict):
			wait = 0
		case err != nil:
			k.Log.Error(err, "keeping the webhook certificate; retrying", "in", k.RetryInterval.String())
			wait = k.RetryInterval
		}
		wait = max(0, min(wait, k.Interval))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Sync runs one round: read, renew if due, store, load, publish the CA
// bundle. next is when a renewal falls due.
func (k *CertKeeper) Sync(ctx context.Context) (next time.Time, err error) {
	bundle, err := k.syncSecret(ctx)
	if err != nil {
		return time.Time{}, err
	}
	cert, err := bundle.TLSCertificate()
	if err != nil {
		return time.Time{}, err
	}
	if old := k.current.Load(); old == nil || !bytes.Equal(old.Certificate[0], cert.Certificate[0]) {
		k.current.Store(cert)
		var notAfter time.Time
		if cert.Leaf != nil {
			notAfter = cert.Leaf.NotAfter
		}
		k.Log.Info("Serving the webhook with a new certificate", "notAfter", notAfter.UTC().Format(time.RFC3339))
	}
	if err := k.publishCABundle(ctx, bundle.CABundle()); err != nil {
		return time.Time{}, err
	}
	return servingcert.NextRenewal(bundle), nil
}

func (k *CertKeeper) syncSecret(ctx context.Context) (*servingcert.Bundle, error) {
	key := types.NamespacedName{Namespace: k.Namespace, Name: k.SecretName}
	var secret corev1.Secret
	exists := true
	if err := k.Reader.Get(ctx, key, &secret); apierrors.IsNotFound(err) {
		exists = false
	} else if err != nil {
		return nil, fmt.Errorf("reading the webhook certificate Secret %s: %w", key, err)
	}
	stored := &servingcert.Bundle{
		CACert: secret.Data[keyCACert], CAKey: secret.Data[keyCAKey],
		Cert: secret.Data[keyCert], Key: secret.Data[keyKey],
		PreviousCAs: secret.Data[keyPreviousCAs],
	}
	next, changed, reason, err := servingcert.Renew(stored, k.Cert, time.Now())
	if err != nil {
		return nil, fmt.Errorf("renewing the webhook certificate: %w", err)
	}
	if !changed {
		return stored, nil
	}
	data := map[string][]byte{
		keyCACert: next.CACert, keyCAKey: next.CAKey, keyCert: next.Cert, keyKey: next.Key,
	}
	if len(next.PreviousCAs) > 0 {
		data[keyPreviousCAs] = next.PreviousCAs
	}
	if !exists {
		secret = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.SecretName, Labels: map[string]string{
				"app.kubernetes.io/name": "barelb", "app.kubernetes.io/component": "controller",
			}},
			Type: corev1.SecretTypeTLS,
			Data: data,
		}
		if err := k.Writer.Create(ctx, &secret); apierrors.IsAlreadyExists(err) {
			return nil, errConflict
		} else if err != nil {
			return nil, fmt.Errorf("creating the webhook certificate Secret %s: %w", key, err)
		}
	} else {
		secret.Data = data
		if err := k.Writer.Update(ctx, &secret); apierrors.IsConflict(err) {
			return nil, errConflict
		} else if err != nil {
			return nil, fmt.Errorf("updating the webhook certificate Secret %s: %w", key, err)
		}
	}
	k.Log.Info("Stored a new webhook certificate", "secret", key.String(), "reason", reason)
	return next, nil
}

// publishCABundle writes the CA bundle into every webhook of the
// configuration that lacks it. A missing configuration is not an error
// (installs without the webhook, like the e2e lab, run the controller
// without one): it is logged once and looked for again next round.
func (k *CertKeeper) publishCABundle(ctx context.Context, caBundle []byte) error {
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	err := k.Reader.Get(ctx, types.NamespacedName{Name: k.ConfigurationName}, &vwc)
	if apierrors.IsNotFound(err) {
		if !k.missingConfig {
			k.Log.Info("The ValidatingWebhookConfiguration does not exist; the API server does not call the webhook. Looking again later",
				"name", k.ConfigurationName, "every", k.Interval.String())
			k.missingConfig = true
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", k.ConfigurationName, err)
	}
	k.missingConfig = false
	stale := 0
	for i := range vwc.Webhooks {
		if !bytes.Equal(vwc.Webhooks[i].ClientConfig.CABundle, caBundle) {
			vwc.Webhooks[i].ClientConfig.CABundle = caBundle
			stale++
		}
	}
	if stale == 0 {
		return nil
	}
	if err := k.Writer.Update(ctx, &vwc); apierrors.IsConflict(err) {
		return errConflict
	} else if err != nil {
		return fmt.Errorf("writing the CA bundle into ValidatingWebhookConfiguration %s: %w", k.ConfigurationName, err)
	}
	k.Log.Info("Wrote the webhook CA bundle", "configuration", k.ConfigurationName, "webhooks", stale)
	return nil
}
