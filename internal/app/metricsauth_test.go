package app_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/barelb/barelb/internal/app"
	"github.com/barelb/barelb/internal/testenv"
)

// TestSecureMetrics serves metrics with --metrics-secure against a real
// API server. The manager acts as the controller's ServiceAccount with
// nothing but the shipped RBAC of config/metrics-secure (tokenreviews and
// subjectaccessreviews), and a scraper's ServiceAccount is bound to the
// shipped ClusterRole barelb-metrics-reader: its token gets the metrics;
// no token gets 401, a forged one 500 (the TokenReview's error), and the
// token of a ServiceAccount without the binding 403.
func TestSecureMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	applyFile(t, env, filepath.Join(env.RepoRoot, "config", "metrics-secure", "rbac.yaml"))
	const ns = "monitoring"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := map[string]string{}
	for _, sa := range []string{"prometheus", "nobody"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("a token for %s: %v", sa, err)
		}
		token[sa] = tr.Status.Token
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-reads-barelb"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "barelb-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus", Namespace: ns}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The controller's identity, as config/metrics-secure binds it.
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":barelb-controller",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreeLoopbackPort(t))
	o := app.DefaultOptions(addr, "0")
	o.MetricsSecure = true
	mgr, err := app.NewManager(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	// The certificate is self-signed: the scraper skips its check, as
	// the chart's ServiceMonitor does.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(bearer string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, err := get(token["prometheus"])
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics with the scraper's token: %d, %v", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"the scraper bound to barelb-metrics-reader", token["prometheus"], http.StatusOK},
		{"no token", "", http.StatusUnauthorized},
		// The API server's TokenReview answers a token it cannot parse
		// with an error, which controller-runtime's filter turns into
		// 500 "Authentication failed" (a well-formed but unknown token
		// gets 401); either way no metrics.
		{"a forged token", "not-a-token", http.StatusInternalServerError},
		{"a ServiceAccount without the binding", token["nobody"], http.StatusForbidden},
	} {
		code, body, err := get(tc.token)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if code != tc.want {
			t.Errorf("%s: HTTP %d, want %d (%s)", tc.name, code, tc.want, strings.TrimSpace(body))
		}
		if code == http.StatusOK && !strings.Contains(body, "# TYPE") {
			t.Errorf("%s: no metrics in the answer:\n%s", tc.name, body)
		}
		if code != http.StatusOK && strings.Contains(body, "# TYPE") {
			t.Errorf("%s: got metrics with HTTP %d", tc.name, code)
		}
	}
	// Plain HTTP gets no metrics.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "# TYPE") {
			t.Error("metrics served over plain HTTP")
		}
	}
}

// applyFile creates every object of a manifest file.
func applyFile(t *testing.T, env *testenv.Env, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding %s: %v", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := env.Client.Create(context.Background(), u); err != nil {
			t.Fatalf("creating %s %s from %s: %v", u.GetKind(), u.GetName(), path, err)
		}
	}
}
