package convert_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/barelb/barelb/internal/testenv"
)

// TestOutputIsAccepted applies every golden output of testdata/convert to
// a real API server with barelb's CRDs, each case in a namespace of its
// own, and expects every object to be stored: the converted configuration
// passes the CRDs' schemas and rules, with strict field validation so that
// a misspelt field fails too.
func TestOutputIsAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	outputs, err := filepath.Glob(filepath.Join("testdata", "convert", "*", "output.yaml"))
	if err != nil || len(outputs) == 0 {
		t.Fatalf("no golden outputs: %v", err)
	}
	kinds := map[string]int{}
	for i, path := range outputs {
		name := filepath.Base(filepath.Dir(path))
		t.Run(name, func(t *testing.T) {
			ns := fmt.Sprintf("case-%d", i)
			if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				t.Fatalf("creating namespace: %v", err)
			}
			objs := readObjects(t, path)
			if len(objs) == 0 {
				t.Fatal("the output holds no objects")
			}
			for _, obj := range objs {
				obj.SetNamespace(ns)
				err := env.Client.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict))
				if err != nil {
					t.Errorf("%s %s was rejected: %v", obj.GetKind(), obj.GetName(), err)
					continue
				}
				kinds[obj.GetKind()]++
			}
		})
	}
	// A control: the API server does enforce the rules the converter
	// steers clear of (here the hold time it drops in crs-bgp), so an
	// accepted output means something.
	t.Run("control", func(t *testing.T) {
		peer := &unstructured.Unstructured{Object: map[string]interface{}{
			"apiVersion": "barelb.io/v1beta1", "kind": "BGPPeer",
			"metadata": map[string]interface{}{"name": "control", "namespace": "case-0"},
			"spec":     map[string]interface{}{"myASN": int64(64512), "peerASN": int64(64512), "peerAddress": "203.0.113.254", "holdTime": "2500ms"},
		}}
		err := env.Client.Create(ctx, peer)
		if err == nil || !strings.Contains(err.Error(), "holdTime") {
			t.Fatalf("a peer with holdTime 2500ms: got %v, want a rejection", err)
		}
	})
	t.Logf("objects accepted, by kind: %v", kinds)
	for _, k := range []string{"IPAddressPool", "L2Advertisement", "BGPAdvertisement", "BGPPeer", "BFDProfile", "Community", "Secret"} {
		if kinds[k] == 0 {
			t.Errorf("no %s was applied; the cases should cover every kind", k)
		}
	}
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var m map[string]interface{}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m != nil {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
	return out
}
