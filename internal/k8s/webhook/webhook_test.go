package webhook_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/webhook"
	"github.com/barelb/barelb/internal/servingcert"
	"github.com/barelb/barelb/internal/testenv"
	"github.com/barelb/barelb/internal/testutil"
)

const (
	namespace = "barelb-system"
	// certLifetime and caLifetime are short so that the serving
	// certificate and the CA are renewed (at two thirds of their
	// lifetimes) while the tests run.
	certLifetime = 12 * time.Second
	caLifetime   = 3 * certLifetime
)

// warnings collects the API server's warnings for one client.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

type suite struct {
	env     *testenv.Env
	c       client.Client // an administrator whose warnings are collected
	warns   *warnings
	cache   client.Reader // the manager's cache, to wait for it
	srv     *webhook.Server
	webhook string // the webhook's URL
}

// TestWebhook runs the controller's webhook code against a real API
// server: the ValidatingWebhookConfiguration is the shipped one
// (config/webhook), with the Service swapped for a URL on 127.0.0.1 and
// failurePolicy Fail, so that any call the API server cannot make through
// TLS fails the write instead of passing unseen.
func TestWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane; not in -short")
	}
	s := start(t)
	t.Run("the CA bundle is written into every webhook and the API server trusts the certificate", s.testCABundle)
	t.Run("pools", s.testPools)
	t.Run("advertisements", s.testAdvertisements)
	t.Run("BGP peers", s.testPeers)
	t.Run("objects outside barelb's namespace are not checked", s.testOtherNamespace)
	t.Run("bad requests get an answer, never a panic", s.testBadRequests)
	t.Run("the serving certificate and the CA are renewed and calls keep succeeding", s.testRotation)
	t.Run("replicas racing at first start end up serving one certificate", s.testReplicasAgree)
}

func start(t *testing.T) *suite {
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	for _, ns := range []string{namespace, "other"} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	mgr, err := ctrl.NewManager(env.Config, env.ManagerOptions(zap.New(zap.UseDevMode(true), zap.WriteTo(testWriter{t}))))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := webhook.Setup(mgr, webhook.Options{
		Namespace:         namespace,
		BindAddress:       "127.0.0.1:0",
		SecretName:        webhook.DefaultSecretName,
		ConfigurationName: webhook.DefaultConfigurationName,
		ServiceName:       webhook.DefaultServiceName,
		ExtraIPs:          []net.IP{net.IPv4(127, 0, 0, 1)},
		CertLifetime:      certLifetime,
		CALifetime:        caLifetime,
		Interval:          500 * time.Millisecond,
		RetryInterval:     500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 30*time.Second, "the webhook serves", testutil.NoError(srv.Ready))

	s := &suite{env: env, warns: &warnings{}, cache: mgr.GetClient(), srv: srv,
		webhook: fmt.Sprintf("https://%s%s", srv.Addr(), webhook.Path)}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = s.warns
	if s.c, err = client.New(cfg, client.Options{Scheme: env.Scheme}); err != nil {
		t.Fatal(err)
	}

	// The shipped configuration, pointed at this test's server.
	data, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "webhook", "validatingwebhookconfiguration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &vwc); err != nil {
		t.Fatal(err)
	}
	if len(vwc.Webhooks) != 1 {
		t.Fatalf("the shipped configuration has %d webhooks, want 1", len(vwc.Webhooks))
	}
	// A second entry shows that every webhook gets the CA bundle.
	second := vwc.Webhooks[0].DeepCopy()
	second.Name = "again.validate.barelb.io"
	vwc.Webhooks = append(vwc.Webhooks, *second)
	for i := range vwc.Webhooks {
		w := &vwc.Webhooks[i]
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(s.webhook)}
		w.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
	}
	if err := env.Client.Create(ctx, &vwc); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *suite) testCABundle(t *testing.T) {
	ctx := context.Background()
	var secret corev1.Secret
	testutil.Eventually(t, 30*time.Second, "every webhook has the CA bundle of the Secret", testutil.NoError(func() error {
		if err := s.env.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: webhook.DefaultSecretName}, &secret); err != nil {
			return err
		}
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		if err := s.env.Client.Get(ctx, types.NamespacedName{Name: webhook.DefaultConfigurationName}, &vwc); err != nil {
			return err
		}
		for _, w := range vwc.Webhooks {
			if !bytes.HasPrefix(w.ClientConfig.CABundle, secret.Data["ca.crt"]) || len(secret.Data["ca.crt"]) == 0 {
				return fmt.Errorf("webhook %s has caBundle of %d bytes, not the Secret's CA", w.Name, len(w.ClientConfig.CABundle))
			}
		}
		return nil
	}))
	if secret.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret type %s, want %s", secret.Type, corev1.SecretTypeTLS)
	}
	cert := s.servedCertificate(t)
	for _, name := range []string{"barelb-webhook-service.barelb-system.svc", "barelb-webhook-service.barelb-system.svc.cluster.local"} {
		if err := cert.VerifyHostname(name); err != nil {
			t.Errorf("served certificate: %v", err)
		}
	}
	// A write the webhook denies proves the API server reached it through
	// TLS: with failurePolicy Fail, an untrusted certificate would be an
	// error of another kind.
	testutil.Eventually(t, 30*time.Second, "the API server calls the webhook", testutil.NoError(func() error {
		err := s.c.Create(ctx, pool("probe", "203.0.113.0/24", "203.0.113.0/25"), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "admission webhook \"validate.barelb.io\" denied the request") {
			return fmt.Errorf("dry-run create of an invalid pool: %v", err)
		}
		return nil
	}))
	if err := s.c.Create(ctx, pool("probe", "203.0.113.0/24"), client.DryRunAll); err != nil {
		t.Errorf("a valid pool was refused: %v", err)
	}
}

// servedCertificate dials the webhook and returns the certificate it
// serves, checked against the CA bundle the API server was given.
func (s *suite) servedCertificate(t *testing.T) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", s.srv.Addr().String(), &tls.Config{RootCAs: s.caPool(t), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("dialing the webhook with the published CA bundle: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func (s *suite) caPool(t *testing.T) *x509.CertPool {
	t.Helper()
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := s.env.Client.Get(context.Background(), types.NamespacedName{Name: webhook.DefaultConfigurationName}, &vwc); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(vwc.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("the caBundle holds no certificate")
	}
	return pool
}

func pool(name string, addresses ...string) *barelbv1beta1.IPAddressPool {
	p := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	for _, a := range addresses {
		p.Spec.Addresses = append(p.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	return p
}

// step is one write and what the API server must answer.
type step struct {
	name     string
	write    func(ctx context.Context, c client.Client) error
	denied   string   // part of the error; empty: allowed
	warnings []string // parts of the warnings, in order
}

func (s *suite) run(t *testing.T, steps []step) {
	t.Helper()
	ctx := context.Background()
	for _, st := range steps {
		s.warns.take()
		err := st.write(ctx, s.c)
		got := s.warns.take()
		switch {
		case st.denied == "" && err != nil:
			t.Errorf("%s: refused: %v", st.name, err)
		case st.denied != "" && err == nil:
			t.Errorf("%s: allowed, want it denied with %q", st.name, st.denied)
		case st.denied != "" && !strings.Contains(err.Error(), st.denied):
			t.Errorf("%s: error %q, want it to contain %q", st.name, err, st.denied)
		case st.denied != "" && !apierrors.IsForbidden(err):
			t.Errorf("%s: error %q is not Forbidden (a webhook denial)", st.name, err)
		}
		if len(got) != len(st.warnings) {
			t.Errorf("%s: warnings %q, want %d containing %q", st.name, got, len(st.warnings), st.warnings)
			continue
		}
		for i := range st.warnings {
			if !strings.Contains(got[i], st.warnings[i]) {
				t.Errorf("%s: warning %q, want it to contain %q", st.name, got[i], st.warnings[i])
			}
		}
	}
}

func create(obj client.Object) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error { return c.Create(ctx, obj) }
}

// update reads obj's current version, changes it and writes it.
func update[T client.Object](obj T, change func(T)) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return c.Update(ctx, obj)
	}
}

func (s *suite) testPools(t *testing.T) {
	lan := pool("lan", "198.51.100.0/24")
	s.run(t, []step{
		{name: "a first pool", write: create(lan)},
		{name: "a disjoint pool", write: create(pool("dmz", "192.0.2.0/28", "2001:db8:1::/120"))},
		{name: "an overlapping pool", write: create(pool("lan2", "198.51.100.200-198.51.100.220")),
			denied: `addresses overlap IPAddressPool "lan" on 198.51.100.200-198.51.100.220`},
		{name: "an edit into another pool", write: update(pool("dmz"), func(p *barelbv1beta1.IPAddressPool) {
			p.Spec.Addresses = append(p.Spec.Addresses, "198.51.100.128/25")
		}), denied: `IPAddressPool "lan" on 198.51.100.128/25`},
		{name: "an edit of labels only", write: update(pool("lan"), func(p *barelbv1beta1.IPAddressPool) {
			p.Labels = map[string]string{"site": "a"}
		})},
	})

	// A Service holding 198.51.100.10 from lan, as the controller writes it.
	ctx := context.Background()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web",
		Annotations: map[string]string{"barelb.io/ip-allocated-from-pool": "lan"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
	if err := s.env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.10"}}
	if err := s.env.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the controller's cache sees the Service's address", testutil.NoError(func() error {
		var got corev1.Service
		if err := s.cache.Get(ctx, client.ObjectKeyFromObject(svc), &got); err != nil {
			return err
		}
		if len(got.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no ingress yet")
		}
		return nil
	}))
	s.run(t, []step{
		{name: "a shrink that keeps the assigned address", write: update(pool("lan"), func(p *barelbv1beta1.IPAddressPool) {
			p.Spec.Addresses = []barelbv1beta1.AddressRange{"198.51.100.0/25"}
		})},
		{name: "a shrink that cuts the assigned address out", write: update(pool("lan"), func(p *barelbv1beta1.IPAddressPool) {
			p.Spec.Addresses = []barelbv1beta1.AddressRange{"198.51.100.64/26"}
		}), warnings: []string{"1 Service holds addresses from this pool that the new addresses do not contain; it will be moved to new addresses: default/web (198.51.100.10)"}},
	})
}

func (s *suite) testAdvertisements(t *testing.T) {
	l2 := func(name string, pools ...string) *barelbv1beta1.L2Advertisement {
		return &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: barelbv1beta1.L2AdvertisementSpec{IPAddressPools: pools}}
	}
	bgp := func(name string, pools, peers []string) *barelbv1beta1.BGPAdvertisement {
		return &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: barelbv1beta1.BGPAdvertisementSpec{IPAddressPools: pools, Peers: peers}}
	}
	s.run(t, []step{
		{name: "L2 naming an existing pool", write: create(l2("l2-lan", "lan"))},
		{name: "L2 naming every pool", write: create(l2("l2-all"))},
		{name: "L2 naming a missing pool", write: create(l2("l2-typo", "lan", "lna")),
			warnings: []string{`ipAddressPools names IPAddressPool "lna" that does not exist in this namespace`}},
		{name: "L2 edited to name a missing pool", write: update(l2("l2-lan"), func(a *barelbv1beta1.L2Advertisement) {
			a.Spec.IPAddressPools = []string{"gone"}
		}), warnings: []string{`IPAddressPool "gone"`}},
		{name: "BGP naming a missing pool and a missing peer", write: create(bgp("bgp-typo", []string{"lan", "nope"}, []string{"tor9"})),
			warnings: []string{`IPAddressPool "nope"`, `peers names BGPPeer "tor9" that does not exist`}},
	})
}

func peer(name, address string, selectors ...barelbv1beta1.Selector) *barelbv1beta1.BGPPeer {
	return &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: barelbv1beta1.BGPPeerSpec{MyASN: 64512, PeerASN: 64513, PeerAddress: address, NodeSelectors: selectors}}
}

func rack(r string) barelbv1beta1.Selector {
	return barelbv1beta1.Selector{MatchLabels: map[string]barelbv1beta1.LabelValue{"rack": barelbv1beta1.LabelValue(r)}}
}

func (s *suite) testPeers(t *testing.T) {
	withSecret := peer("tor-md5", "198.51.100.2")
	withSecret.Spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: "tor-md5"}
	afterSecret := peer("tor-md5-later", "198.51.100.3")
	afterSecret.Spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: "tor-md5"}
	s.run(t, []step{
		{name: "a peer for every node", write: create(peer("tor1", "198.51.100.1"))},
		{name: "a second peer for the same address and every node", write: create(peer("tor1-again", "198.51.100.1")),
			denied: `BGPPeer "tor1" is also for 198.51.100.1 port 179, and both select every node`},
		{name: "the same address on another port", write: create(func() *barelbv1beta1.BGPPeer {
			p := peer("tor1-alt-port", "198.51.100.1")
			p.Spec.PeerPort = 1179
			return p
		}())},
		{name: "rack a", write: create(peer("tor5-a", "198.51.100.5", rack("a")))},
		{name: "rack b: other nodes", write: create(peer("tor5-b", "198.51.100.5", rack("b")))},
		{name: "rack a again", write: create(peer("tor5-a2", "198.51.100.5", rack("a"))),
			denied: `both select nodes with "rack=a"`},
		{name: "a zone that may share nodes with the racks", write: create(peer("tor5-z", "198.51.100.5",
			barelbv1beta1.Selector{MatchLabels: map[string]barelbv1beta1.LabelValue{"zone": "1"}})),
			warnings: []string{`BGPPeer "tor5-a" is also for 198.51.100.5 port 179`, `BGPPeer "tor5-b"`}},
		{name: "a password Secret that does not exist yet", write: create(withSecret),
			warnings: []string{`passwordSecret "tor-md5" does not exist in namespace barelb-system`}},
		{name: "the Secret created", write: create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tor-md5", Namespace: namespace},
			Type: corev1.SecretTypeBasicAuth, StringData: map[string]string{"password": "x"}})},
		{name: "a peer whose Secret exists", write: create(afterSecret)},
	})
}

func (s *suite) testOtherNamespace(t *testing.T) {
	other := pool("lan", "198.51.100.0/24") // overlaps barelb-system/lan, and itself is fine
	other.Namespace = "other"
	adv := &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "typo", Namespace: "other"},
		Spec: barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"nowhere"}}}
	p1, p2 := peer("dup1", "198.51.100.1"), peer("dup2", "198.51.100.1")
	p1.Namespace, p2.Namespace = "other", "other"
	s.run(t, []step{
		{name: "a pool overlapping barelb's", write: create(other)},
		{name: "a pool overlapping another pool there", write: create(func() *barelbv1beta1.IPAddressPool {
			p := pool("lan-again", "198.51.100.0/24")
			p.Namespace = "other"
			return p
		}())},
		{name: "an advertisement naming a missing pool", write: create(adv)},
		{name: "duplicate peers", write: create(p1)},
		{name: "duplicate peers, second", write: create(p2)},
	})
}

func (s *suite) testBadRequests(t *testing.T) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.caPool(t), ServerName: "127.0.0.1"}}}
	reviewIn := func(ns, kind, object string) string {
		return fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",`+
			`"kind":{"group":"barelb.io","version":"v1beta1","kind":%q},"resource":{"group":"barelb.io","version":"v1beta1","resource":"x"},`+
			`"namespace":%q,"name":"n","operation":"CREATE","userInfo":{},"object":%s}}`, kind, ns, object)
	}
	review := func(kind, object string) string { return reviewIn(namespace, kind, object) }
	overlapping := `{"metadata":{"name":"n"},"spec":{"addresses":["198.51.100.0/24"]}}` // overlaps barelb-system/lan
	for _, tc := range []struct {
		name, body string
		// want is part of the response body; allowed tells what it says.
		want string
	}{
		{"not JSON", "{{{", `"allowed":false`},
		{"empty", "", `"allowed":false`},
		// No request: no namespace, so nothing of barelb's to judge.
		{"a review without a request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, `"allowed":true`},
		{"an unknown kind", review("Community", `{"spec":{}}`), `"allowed":true`},
		{"a pool that is not an object", review("IPAddressPool", `"just a string"`), `"allowed":false`},
		{"a pool with a wrong field type", review("IPAddressPool", `{"spec":{"addresses":42}}`), `"allowed":false`},
		{"a pool without addresses", review("IPAddressPool", `{"metadata":{"name":"n"},"spec":{}}`), `addresses is empty`},
		{"a peer with an unknown field only", review("BGPPeer", `{"metadata":{"name":"n"},"spec":{"bogus":1}}`), `"allowed":false`},
		{"an advertisement of null", review("L2Advertisement", `null`), `"allowed":false`},
		// Should another configuration send objects of other namespaces,
		// the handler still leaves them alone.
		{"an overlapping pool in barelb's namespace", review("IPAddressPool", overlapping), `overlap IPAddressPool \"lan\"`},
		{"the same pool in another namespace", reviewIn("other", "IPAddressPool", overlapping), `"allowed":true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := hc.Post(s.webhook, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("status %d, body %s; want it to contain %s", resp.StatusCode, body, tc.want)
			}
		})
	}
	if err := s.srv.Ready(); err != nil {
		t.Errorf("the webhook stopped serving: %v", err)
	}
}

func (s *suite) testRotation(t *testing.T) {
	ctx := context.Background()
	first := s.servedCertificate(t)
	certs := map[string]bool{first.SerialNumber.String(): true}
	cas := map[string]bool{first.Issuer.String(): true}
	calls := 0
	deadline := time.Now().Add(20 * caLifetime)
	for len(certs) < 3 || len(cas) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("saw %d serving certificates and %d CAs in %s, want the certificate renewed twice and the CA once", len(certs), len(cas), 20*caLifetime)
		}
		// Through the API server: with failurePolicy Fail, a call the
		// webhook cannot take fails the write.
		if err := s.c.Create(ctx, pool("rotation", "203.0.113.0/24"), client.DryRunAll); err != nil {
			t.Fatalf("after %d calls, %d certificates and %d CAs: %v", calls, len(certs), len(cas), err)
		}
		calls++
		cert := s.servedCertificate(t) // verified against the current caBundle
		if life := cert.NotAfter.Sub(cert.NotBefore); life > certLifetime+certLifetime/10+time.Second {
			t.Fatalf("certificate lives %s, want %s", life, certLifetime)
		}
		certs[cert.SerialNumber.String()] = true
		cas[cert.Issuer.String()] = true
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d calls through the API server succeeded while the serving certificate was renewed %d times and the CA %d times",
		calls, len(certs)-1, len(cas)-1)
}

func (s *suite) testReplicasAgree(t *testing.T) {
	ctx := context.Background()
	keepers := make([]*webhook.CertKeeper, 4)
	for i := range keepers {
		keepers[i] = &webhook.CertKeeper{
			Namespace: namespace, SecretName: "race-cert",
			// Missing on purpose: the keeper must still serve.
			ConfigurationName: "no-such-configuration",
			Cert:              servingcert.Options{DNSNames: webhook.DNSNames("race", namespace)},
			Reader:            s.env.Client, Writer: s.env.Client,
			Interval: time.Second, RetryInterval: time.Second,
			Log: zap.New(zap.WriteTo(testWriter{t})),
		}
	}
	var wg sync.WaitGroup
	for _, k := range keepers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; ; attempt++ {
				_, err := k.Sync(ctx)
				if err == nil {
					return
				}
				if attempt == 10 {
					t.Errorf("keeper did not settle: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var first []byte
	for i, k := range keepers {
		cert, err := k.GetCertificate(nil)
		if err != nil {
			t.Fatalf("keeper %d: %v", i, err)
		}
		if i == 0 {
			first = cert.Certificate[0]
		} else if !bytes.Equal(first, cert.Certificate[0]) {
			t.Errorf("keeper %d serves another certificate than keeper 0", i)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
