package v1beta1_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/barelb/barelb/internal/testenv"
)

const namespace = "barelb-system"

// validationCase is one object of testdata/valid.yaml or invalid.yaml.
type validationCase struct {
	Name   string                 `json:"name"`
	Want   []string               `json:"want"`
	Object map[string]interface{} `json:"object"`
}

func loadCases(t *testing.T, file string) []validationCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	var cases []validationCase
	if err := yaml.Unmarshal(data, &cases); err != nil {
		t.Fatalf("parsing %s: %v", file, err)
	}
	return cases
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// objectFor turns a case into an object with a unique name in barelb's
// namespace.
func objectFor(c validationCase) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: c.Object}
	u.SetAPIVersion("barelb.io/v1beta1")
	u.SetNamespace(namespace)
	u.SetName(strings.Trim(nonName.ReplaceAllString(strings.ToLower(c.Name), "-"), "-"))
	return u
}

// create sends the object with strict field validation, so a typo in a
// fixture fails instead of being dropped.
func create(ctx context.Context, c client.Client, obj client.Object) error {
	return c.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict))
}

func TestAPIValidation(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}

	t.Run("invalid objects are rejected with a clear message", func(t *testing.T) {
		cases := loadCases(t, "invalid.yaml")
		if len(cases) < 30 {
			t.Fatalf("only %d invalid cases; the table must hold at least 30", len(cases))
		}
		for _, tc := range cases {
			t.Run(tc.Name, func(t *testing.T) {
				err := create(ctx, env.Client, objectFor(tc))
				if err == nil {
					t.Fatalf("accepted; want a rejection containing %q", tc.Want)
				}
				if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
					t.Fatalf("rejected for another reason: %v", err)
				}
				t.Logf("rejected: %v", err)
				for _, want := range tc.Want {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error does not contain %q:\n%v", want, err)
					}
				}
			})
		}
	})

	t.Run("valid edge cases are accepted", func(t *testing.T) {
		for _, tc := range loadCases(t, "valid.yaml") {
			t.Run(tc.Name, func(t *testing.T) {
				if err := create(ctx, env.Client, objectFor(tc)); err != nil {
					t.Fatalf("rejected: %v", err)
				}
			})
		}
	})

	t.Run("enableGracefulRestart cannot change", func(t *testing.T) {
		peer := objectFor(validationCase{Name: "graceful", Object: map[string]interface{}{
			"kind": "BGPPeer",
			"spec": map[string]interface{}{"myASN": int64(64512), "peerASN": int64(64500), "peerAddress": "198.51.100.1"},
		}})
		if err := create(ctx, env.Client, peer); err != nil {
			t.Fatalf("creating peer: %v", err)
		}
		// An unrelated edit is fine.
		if err := unstructured.SetNestedField(peer.Object, "30s", "spec", "connectTime"); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Update(ctx, peer); err != nil {
			t.Fatalf("an edit that keeps enableGracefulRestart was rejected: %v", err)
		}
		_ = unstructured.SetNestedField(peer.Object, true, "spec", "enableGracefulRestart")
		err := env.Client.Update(ctx, peer)
		if err == nil || !strings.Contains(err.Error(), "enableGracefulRestart cannot be changed after creation") {
			t.Fatalf("turning graceful restart on was not rejected as expected: %v", err)
		}
	})

	t.Run("Go parsers agree with the API server", func(t *testing.T) {
		testParsersAgree(ctx, t, env)
	})

	t.Run("samples apply", func(t *testing.T) {
		applySamples(ctx, t, env)
	})
}

// applySamples creates every object of every file in config/samples.
func applySamples(ctx context.Context, t *testing.T, env *testenv.Env) {
	files, err := filepath.Glob(filepath.Join(env.RepoRoot, "config", "samples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			var obj map[string]interface{}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s document %d: %v", filepath.Base(file), i, err)
			}
			if obj == nil {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if err := create(ctx, env.Client, u); err != nil {
				t.Errorf("%s: %s %s rejected: %v", filepath.Base(file), u.GetKind(), u.GetName(), err)
			}
		}
	}
	var pools unstructured.UnstructuredList
	pools.SetAPIVersion("barelb.io/v1beta1")
	pools.SetKind("IPAddressPoolList")
	if err := env.Client.List(ctx, &pools, client.InNamespace(namespace)); err != nil {
		t.Fatalf("listing pools: %v", err)
	}
	if len(pools.Items) == 0 {
		t.Fatalf("no pools after applying %d sample files", len(files))
	}
}
