package convert

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/testutil"
)

// caseDirs lists the cases of testdata/convert: each holds input.yaml and
// the golden output.yaml and warnings.txt.
func caseDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "convert", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases under testdata/convert: %v", err)
	}
	return dirs
}

func convertFile(t *testing.T, path string) *Result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert([]Source{{Name: "input.yaml", Data: data}}, Options{})
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	return res
}

func TestGolden(t *testing.T) {
	for _, dir := range caseDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			res := convertFile(t, filepath.Join(dir, "input.yaml"))
			var out bytes.Buffer
			if err := res.WriteYAML(&out); err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, filepath.Join(dir, "output.yaml"), out.Bytes())
			var warnings bytes.Buffer
			for _, w := range res.Warnings {
				warnings.WriteString(w.String() + "\n")
			}
			testutil.Golden(t, filepath.Join(dir, "warnings.txt"), warnings.Bytes())

			// The output must convert cleanly a second time through barelb's
			// own configuration parser, not only look right.
			for _, obj := range res.Objects {
				switch obj["kind"] {
				case "IPAddressPool":
					var p barelbv1beta1.IPAddressPool
					fromMap(t, obj, &p)
					if _, err := config.PoolFromAPI(&p); err != nil {
						t.Errorf("IPAddressPool %s is not valid barelb configuration: %v", p.Name, err)
					}
				case "L2Advertisement":
					var a barelbv1beta1.L2Advertisement
					fromMap(t, obj, &a)
					if _, err := config.L2AdvertisementFromAPI(&a); err != nil {
						t.Errorf("L2Advertisement %s is not valid barelb configuration: %v", a.Name, err)
					}
				}
				meta := obj["metadata"].(map[string]interface{})
				if meta["namespace"] != DefaultNamespace {
					t.Errorf("%s %s is in namespace %v", obj["kind"], meta["name"], meta["namespace"])
				}
			}
		})
	}
}

func fromMap(t *testing.T, m map[string]interface{}, into interface{}) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, into); err != nil {
		t.Fatalf("decoding %v: %v", m["kind"], err)
	}
}

func TestNamespaceOption(t *testing.T) {
	res, err := Convert([]Source{{Name: "in", Data: []byte(legacyL2)}}, Options{Namespace: "lb"})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range res.Objects {
		if ns := obj["metadata"].(map[string]interface{})["namespace"]; ns != "lb" {
			t.Errorf("%s is in namespace %v, want lb", obj["kind"], ns)
		}
	}
	if _, err := Convert([]Source{{Name: "in", Data: []byte(legacyL2)}}, Options{Namespace: "Not_A_Namespace"}); err == nil {
		t.Error("an invalid namespace was accepted")
	}
}

func TestSeveralSources(t *testing.T) {
	pool := "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [198.51.100.0/30]}\n"
	res, err := Convert([]Source{{Name: "one.yaml", Data: []byte(pool)}, {Name: "two.yaml", Data: []byte(legacyL2)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != 3 {
		t.Fatalf("got %d objects, want the pool of one.yaml and a pool and an advertisement of two.yaml", len(res.Objects))
	}
	_, err = Convert([]Source{{Name: "one.yaml", Data: []byte(pool)}, {Name: "two.yaml", Data: []byte(pool)}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "two.yaml:1") || !strings.Contains(err.Error(), `two IPAddressPool objects would be named "a"`) {
		t.Errorf("a pool defined twice: got %v", err)
	}
}

const legacyL2 = `apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
data:
  config: |
    address-pools:
    - {name: default, protocol: layer2, addresses: [198.51.100.0/29]}
`

// TestBadInput feeds input convert must refuse, with a message that says
// where and why.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name  string
		input string
		want  []string
	}{
		{"empty", "", []string{"holds no objects"}},
		{"only comments", "# nothing\n---\n# here\n", []string{"holds no objects"}},
		{"malformed YAML", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: [unclosed\n", []string{"in.yaml:1", "not valid YAML"}},
		{"malformed second document", legacyL2 + "---\nkind: : :\n", []string{"in.yaml:9", "not valid YAML"}},
		{"a list, not an object", "- a\n- b\n", []string{"in.yaml:1", "is a list, not a Kubernetes object"}},
		{"a scalar", "hello\n", []string{"is a string, not a Kubernetes object"}},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", []string{"no apiVersion or kind"}},
		{"unknown kind", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: speaker}\n", []string{"Deployment speaker (apiVersion apps/v1) is not MetalLB configuration", "convert reads metallb.io"}},
		{"unknown metallb kind", "apiVersion: metallb.io/v1beta1\nkind: BGPSession\nmetadata: {name: x}\n", []string{"kind BGPSession of metallb.io is not one convert reads"}},
		{"unknown metallb version", "apiVersion: metallb.io/v1\nkind: IPAddressPool\nmetadata: {name: x}\n", []string{"metallb.io/v1 is not a version of IPAddressPool", "v1beta1"}},
		{"already barelb", "apiVersion: barelb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: x}\n", []string{"already barelb configuration"}},
		{"no name", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nspec: {addresses: [198.51.100.0/30]}\n", []string{"has no metadata.name"}},
		{"metadata of the wrong type", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: [a]}\n", []string{"metadata.name: a array does not fit"}},
		{"spec of the wrong type", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: [1]\n", []string{"IPAddressPool a: spec is a list, not an object"}},
		{"field of the wrong type", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: sixty, peerASN: 1, peerAddress: 198.51.100.1}\n", []string{"BGPPeer p: spec.myASN: a string does not fit a field of type uint32"}},
		{"negative ASN", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: -1, peerASN: 1, peerAddress: 198.51.100.1}\n", []string{"spec.myASN: a number -1 does not fit"}},
		{"bad duration", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 1, peerAddress: 198.51.100.1, holdTime: soon}\n", []string{"BGPPeer p: spec", "invalid duration"}},
		{"peer without address", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2}\n", []string{"BGPPeer p: spec.peerAddress is missing"}},
		{"peer address not an IP", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: router.example}\n", []string{`spec.peerAddress: "router.example" is not an IP address`}},
		{"pool without addresses", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {}\n", []string{"IPAddressPool a: spec.addresses: the pool has no addresses"}},
		{"pool with a bad address", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [198.51.100.7]}\n", []string{"spec.addresses[0]", "198.51.100.7/32"}},
		{"ConfigMap without config", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-proxy}\ndata: {config.conf: x}\n", []string{"ConfigMap kube-proxy has no data.config"}},
		{"legacy config malformed", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    peers: [\n", []string{"ConfigMap metallb-system/config: data.config is not valid YAML"}},
		{"legacy config of the wrong shape", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools: {name: x}\n", []string{"data.config.address-pools: a object does not fit"}},
		{"legacy pool without protocol", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools:\n    - {name: x, addresses: [198.51.100.0/30]}\n", []string{"data.config.address-pools[0].protocol is missing; want layer2 or bgp"}},
		{"legacy pool with an unknown protocol", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools:\n    - {name: x, protocol: arp, addresses: [198.51.100.0/30]}\n", []string{`protocol is "arp"`}},
		{"legacy pool name not a Kubernetes name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools:\n    - {name: My_Pool, protocol: layer2, addresses: [198.51.100.0/30]}\n", []string{`the pool name "My_Pool" cannot name an object`, "address-pool annotations"}},
		{"legacy pool with a bad address", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools:\n    - {name: x, protocol: bgp, addresses: [198.51.100.9-198.51.100.1]}\n", []string{"data.config.address-pools[0].addresses[0]"}},
		{"legacy peer without my-asn", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    peers:\n    - {peer-address: 198.51.100.1, peer-asn: 1}\n", []string{"data.config.peers[0].my-asn is missing"}},
		{"pool twice", legacyL2 + "---\n" + legacyL2, []string{`two IPAddressPool objects would be named "default"`}},
		{"List with a scalar item", "apiVersion: v1\nkind: List\nitems: [3]\n", []string{"items[0] is a float64, not an object"}},
		{"List without items", "apiVersion: v1\nkind: List\nitems: []\n", []string{"holds no objects"}},
		{"only status objects", "apiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata: {name: s}\n", []string{"holds no MetalLB configuration"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Convert([]Source{{Name: "in.yaml", Data: []byte(tc.input)}}, Options{})
			if err == nil {
				t.Fatalf("accepted, with %d objects; want an error containing %q", len(res.Objects), tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// FuzzConvert checks that no input makes Convert panic, and that what it
// accepts it can write.
func FuzzConvert(f *testing.F) {
	dirs, _ := filepath.Glob(filepath.Join("testdata", "convert", "*", "input.yaml"))
	for _, d := range dirs {
		data, err := os.ReadFile(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(legacyL2))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: List, items: [1]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Convert([]Source{{Name: "fuzz", Data: data}}, Options{})
		if err != nil {
			return
		}
		if err := res.WriteYAML(&bytes.Buffer{}); err != nil {
			t.Fatalf("accepted input could not be written: %v", err)
		}
	})
}
