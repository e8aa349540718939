package install_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/internal/testenv"
)

// The chart's release: its namespace is the one config/default installs to.
const (
	release = "barelb"
	chart   = "config/helm/barelb"
)

// objects are rendered manifests by kind/namespace/name.
type objects map[string]*unstructured.Unstructured

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

func (o objects) keys() []string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (o objects) clone() objects {
	out := objects{}
	for k, u := range o {
		out[k] = u.DeepCopy()
	}
	return out
}

// decode parses a multi-document YAML stream.
func decode(t *testing.T, what string, manifests []byte) objects {
	t.Helper()
	out := objects{}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding %s: %v", what, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if _, dup := out[key(u)]; dup {
			t.Fatalf("%s renders %s twice", what, key(u))
		}
		out[key(u)] = u
	}
	return out
}

type chartEnv struct {
	root, helm string
}

func needsHelm(t *testing.T) chartEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("runs bin/helm, which `make tools` builds; not in -short")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	helm := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("bin/helm is missing: run `make tools` (make test does): %v", err)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl is needed to render the kustomizations: %v", err)
	}
	return chartEnv{root: root, helm: helm}
}

func (e chartEnv) run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = e.root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// template renders the chart with --set style flags (each element of set
// is passed as is: "--set", "a=b" or "--set-json", "a=[...]").
func (e chartEnv) template(t *testing.T, set ...string) objects {
	t.Helper()
	args := append([]string{"template", release, chart, "--namespace", namespace, "--include-crds"}, set...)
	return decode(t, "helm template", e.run(t, e.helm, args...))
}

func (e chartEnv) kustomize(t *testing.T, dir string) objects {
	t.Helper()
	return decode(t, "kubectl kustomize "+dir, e.run(t, "kubectl", "kustomize", dir))
}

// sameObjects fails with a per-object diff when got and want differ.
func sameObjects(t *testing.T, got, want objects) {
	t.Helper()
	for _, k := range want.keys() {
		if got[k] == nil {
			t.Errorf("%s is missing", k)
		} else if d := cmp.Diff(want[k].Object, got[k].Object); d != "" {
			t.Errorf("%s differs (-want +got):\n%s", k, d)
		}
	}
	for _, k := range got.keys() {
		if want[k] == nil {
			t.Errorf("%s is rendered but not expected", k)
		}
	}
}

func TestHelmChartCRDsAreCopies(t *testing.T) {
	e := needsHelm(t)
	bases, _ := filepath.Glob(filepath.Join(e.root, "config", "crd", "bases", "*.yaml"))
	copies, _ := filepath.Glob(filepath.Join(e.root, chart, "crds", "*.yaml"))
	if len(bases) == 0 || len(bases) != len(copies) {
		t.Fatalf("%d CRDs in config/crd/bases, %d in %s/crds: `make manifests` copies them", len(bases), len(copies), chart)
	}
	for _, b := range bases {
		want, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(e.root, chart, "crds", filepath.Base(b)))
		if err != nil {
			t.Fatalf("%v (`make manifests` copies the CRDs into the chart)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s/crds/%s is not a copy of config/crd/bases/%[2]s: run `make manifests`", chart, filepath.Base(b))
		}
	}
}

func TestHelmLint(t *testing.T) {
	e := needsHelm(t)
	for _, set := range [][]string{
		nil,
		{"--set", "namespace.create=true,serviceMonitor.enabled=true,prometheusRule.enabled=true,memberlist.secretName="},
	} {
		out := e.run(t, e.helm, append([]string{"lint", "--strict", chart}, set...)...)
		t.Logf("helm lint %v:\n%s", set, out)
	}
}

// TestHelmChartRendersConfigDefault: the chart with its default values is
// config/default, object for object and field for field, but for the
// Namespace, which a `helm install --create-namespace` makes (and
// namespace.create renders).
func TestHelmChartRendersConfigDefault(t *testing.T) {
	e := needsHelm(t)
	kustomized := e.kustomize(t, "config/default")
	ns := "Namespace//" + namespace
	if kustomized[ns] == nil {
		t.Fatalf("config/default has no Namespace %s", namespace)
	}
	t.Run("default values", func(t *testing.T) {
		want := kustomized.clone()
		delete(want, ns)
		sameObjects(t, e.template(t), want)
	})
	t.Run("namespace.create", func(t *testing.T) {
		sameObjects(t, e.template(t, "--set", "namespace.create=true"), kustomized)
	})
	t.Run("serviceMonitor.enabled and prometheusRule.enabled render config/prometheus", func(t *testing.T) {
		want := kustomized.clone()
		delete(want, ns)
		for k, u := range e.kustomize(t, "config/prometheus") {
			want[k] = u
		}
		if want["PrometheusRule/"+namespace+"/barelb-alerts"] == nil {
			t.Fatal("config/prometheus has no PrometheusRule barelb-alerts")
		}
		got := e.template(t, "--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true")
		sameObjects(t, got, want)
		checkScrapeChain(t, got)
	})
	t.Run("metrics.secure renders config/metrics-secure", func(t *testing.T) {
		want := e.kustomize(t, "config/metrics-secure")
		delete(want, ns)
		got := e.template(t, "--set", "metrics.secure=true")
		sameObjects(t, got, want)
		for _, k := range []string{controllerKey, speakerKey} {
			if args := fmt.Sprint(container(t, got[k])["args"]); !strings.Contains(args, "--metrics-secure") {
				t.Errorf("%s args %s lack --metrics-secure", k, args)
			}
		}
	})
	t.Run("prometheusRule.enabled alone", func(t *testing.T) {
		got := e.template(t, "--set", "prometheusRule.enabled=true")
		rule := got["PrometheusRule/"+namespace+"/barelb-alerts"]
		if rule == nil {
			t.Fatal("no PrometheusRule rendered")
		}
		want := e.kustomize(t, "config/prometheus")["PrometheusRule/"+namespace+"/barelb-alerts"]
		if d := cmp.Diff(want.Object, rule.Object); d != "" {
			t.Errorf("PrometheusRule differs from config/prometheus (-want +got):\n%s", d)
		}
	})
}

// checkScrapeChain follows each ServiceMonitor to its metrics Service and
// on to the pods: the selector picks exactly one Service, whose port it
// names, and that Service selects the pods of a workload whose container
// has the port the Service targets. (The monitoring.coreos.com CRDs are
// not available to the test's API server.)
func checkScrapeChain(t *testing.T, objs objects) {
	t.Helper()
	matches := func(selector, labels map[string]any) bool {
		for k, v := range selector {
			if labels[k] != v {
				return false
			}
		}
		return len(selector) > 0
	}
	monitors := 0
	for _, k := range objs.keys() {
		sm := objs[k]
		if sm.GetKind() != "ServiceMonitor" {
			continue
		}
		monitors++
		selector, _, _ := unstructured.NestedMap(sm.Object, "spec", "selector", "matchLabels")
		endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		var services []*unstructured.Unstructured
		for _, o := range objs {
			labels, _, _ := unstructured.NestedMap(o.Object, "metadata", "labels")
			if o.GetKind() == "Service" && o.GetNamespace() == sm.GetNamespace() && matches(selector, labels) {
				services = append(services, o)
			}
		}
		if len(services) != 1 || len(endpoints) != 1 {
			t.Errorf("%s selects %d Services with %d endpoints, want 1 and 1", k, len(services), len(endpoints))
			continue
		}
		svc := services[0]
		port := endpoints[0].(map[string]any)["port"]
		ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
		var target any
		for _, p := range ports {
			if p.(map[string]any)["name"] == port {
				target = p.(map[string]any)["targetPort"]
			}
		}
		if target == nil {
			t.Errorf("%s scrapes port %v, which %s does not have", k, port, key(svc))
			continue
		}
		podSelector, _, _ := unstructured.NestedMap(svc.Object, "spec", "selector")
		found := false
		for _, w := range objs {
			if w.GetKind() != "Deployment" && w.GetKind() != "DaemonSet" {
				continue
			}
			podLabels, _, _ := unstructured.NestedMap(w.Object, "spec", "template", "metadata", "labels")
			if !matches(podSelector, podLabels) {
				continue
			}
			for _, p := range container(t, w)["ports"].([]any) {
				found = found || p.(map[string]any)["name"] == target
			}
		}
		if !found {
			t.Errorf("%s selects no pods with a container port %v", key(svc), target)
		}
	}
	if monitors != 2 {
		t.Errorf("%d ServiceMonitors, want one per program", monitors)
	}
}

// container is the only container of a Deployment's or DaemonSet's pod.
func container(t *testing.T, u *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("%s has %d containers, want 1", key(u), len(cs))
	}
	return cs[0].(map[string]any)
}

// setContainer runs edit on the only container of u.
func setContainer(t *testing.T, u *unstructured.Unstructured, edit func(c map[string]any)) {
	t.Helper()
	c := container(t, u)
	edit(c)
	if err := unstructured.SetNestedSlice(u.Object, []any{c}, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
}

func setPod(t *testing.T, u *unstructured.Unstructured, value any, fields ...string) {
	t.Helper()
	if err := unstructured.SetNestedField(u.Object, value, append([]string{"spec", "template", "spec"}, fields...)...); err != nil {
		t.Fatal(err)
	}
}

func appendArgs(c map[string]any, args ...string) {
	for _, a := range args {
		c["args"] = append(c["args"].([]any), a)
	}
}

func replaceArg(c map[string]any, old, new string) {
	for i, a := range c["args"].([]any) {
		if a == old {
			c["args"].([]any)[i] = new
		}
	}
}

func dropEnv(c map[string]any, name string) {
	var env []any
	for _, v := range c["env"].([]any) {
		if v.(map[string]any)["name"] != name {
			env = append(env, v)
		}
	}
	c["env"] = env
}

// dropRules removes the rules of a Role or ClusterRole whose resourceNames
// print as names ("[]" for none) and that are about Secrets or webhook
// configurations; it fails when there is none.
func dropRules(t *testing.T, role *unstructured.Unstructured, names string) {
	t.Helper()
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	var kept []any
	for _, r := range rules {
		r := r.(map[string]any)
		resources, ruleNames := fmt.Sprint(r["resources"]), "[]"
		if r["resourceNames"] != nil {
			ruleNames = fmt.Sprint(r["resourceNames"])
		}
		if (resources == "[secrets]" || resources == "[validatingwebhookconfigurations]") && ruleNames == names {
			continue
		}
		kept = append(kept, r)
	}
	if len(kept) == len(rules) {
		t.Fatalf("%s has no rule on %s to drop", key(role), names)
	}
	if err := unstructured.SetNestedSlice(role.Object, kept, "rules"); err != nil {
		t.Fatal(err)
	}
}

// noWebhook is the default render without the admission webhook.
func noWebhook(t *testing.T, want objects) {
	t.Helper()
	delete(want, "Service/"+namespace+"/barelb-webhook-service")
	delete(want, "ValidatingWebhookConfiguration//barelb-validating-webhook")
	setContainer(t, want[controllerKey], func(c map[string]any) {
		var args, ports []any
		for _, a := range c["args"].([]any) {
			if strings.HasPrefix(a.(string), "--webhook-cert-namespace=") {
				continue
			}
			if strings.HasPrefix(a.(string), "--webhook-port=") {
				a = "--disable-webhook"
			}
			args = append(args, a)
		}
		for _, p := range c["ports"].([]any) {
			if p.(map[string]any)["name"] != "webhook" {
				ports = append(ports, p)
			}
		}
		c["args"], c["ports"] = args, ports
	})
	dropRules(t, want["ClusterRole//barelb-controller"], "[barelb-validating-webhook]")
	for _, k := range []string{"Namespace//" + certNamespace, "Role/" + certNamespace + "/barelb-controller",
		"RoleBinding/" + certNamespace + "/barelb-controller"} {
		if want[k] == nil {
			t.Fatalf("the default render has no %s", k)
		}
		delete(want, k)
	}
}

const (
	controllerKey = "Deployment/" + namespace + "/barelb-controller"
	speakerKey    = "DaemonSet/" + namespace + "/barelb-speaker"
)

// TestHelmValues: each value changes what it should and nothing else. The
// expected objects are the default render with the expected edits.
func TestHelmValues(t *testing.T) {
	e := needsHelm(t)
	defaults := e.template(t)
	for _, tc := range []struct {
		name string
		set  []string
		edit func(t *testing.T, want objects)
	}{{
		name: "images",
		set: []string{"--set", "controller.image.repository=registry.example/lb/controller,controller.image.tag=v1.2.3," +
			"controller.image.pullPolicy=Always,speaker.image.repository=registry.example/lb/speaker,speaker.image.tag=v1.2.4"},
		edit: func(t *testing.T, want objects) {
			setContainer(t, want[controllerKey], func(c map[string]any) {
				c["image"], c["imagePullPolicy"] = "registry.example/lb/controller:v1.2.3", "Always"
			})
			setContainer(t, want[speakerKey], func(c map[string]any) { c["image"] = "registry.example/lb/speaker:v1.2.4" })
		},
	}, {
		name: "scheduling",
		set: []string{
			"--set-json", `speaker.tolerations=[{"operator":"Exists"}]`,
			"--set-json", `speaker.nodeSelector={"kubernetes.io/os":"linux"}`,
			"--set-json", `controller.nodeSelector={"node-role.kubernetes.io/control-plane":""}`,
			"--set-json", `controller.tolerations=[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}]`,
			"--set-json", `controller.affinity=null`,
			"--set", "controller.replicas=3,speaker.priorityClassName=",
		},
		edit: func(t *testing.T, want objects) {
			setPod(t, want[speakerKey], []any{map[string]any{"operator": "Exists"}}, "tolerations")
			setPod(t, want[speakerKey], map[string]any{"kubernetes.io/os": "linux"}, "nodeSelector")
			unstructured.RemoveNestedField(want[speakerKey].Object, "spec", "template", "spec", "priorityClassName")
			setPod(t, want[controllerKey], map[string]any{"node-role.kubernetes.io/control-plane": ""}, "nodeSelector")
			setPod(t, want[controllerKey], []any{map[string]any{
				"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}}, "tolerations")
			unstructured.RemoveNestedField(want[controllerKey].Object, "spec", "template", "spec", "affinity")
			if err := unstructured.SetNestedField(want[controllerKey].Object, float64(3), "spec", "replicas"); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "restart hold longer",
		set:  []string{"--set", "speaker.restartHold=1m"},
		edit: func(t *testing.T, want objects) {
			setContainer(t, want[speakerKey], func(c map[string]any) { replaceArg(c, "--restart-hold=30s", "--restart-hold=1m") })
		},
	}, {
		name: "restart hold off: a stopping speaker hands its addresses over",
		set:  []string{"--set", "speaker.restartHold="},
		edit: func(t *testing.T, want objects) {
			setContainer(t, want[speakerKey], func(c map[string]any) {
				var args []any
				for _, a := range c["args"].([]any) {
					if a != "--restart-hold=30s" {
						args = append(args, a)
					}
				}
				c["args"] = args
			})
		},
	}, {
		name: "BGP graceful shutdown and the speaker's grace period",
		set:  []string{"--set", "speaker.bgpGracefulShutdown=45s,speaker.terminationGracePeriodSeconds=60"},
		edit: func(t *testing.T, want objects) {
			setContainer(t, want[speakerKey], func(c map[string]any) { appendArgs(c, "--bgp-graceful-shutdown=45s") })
			setPod(t, want[speakerKey], float64(60), "terminationGracePeriodSeconds")
		},
	}, {
		name: "log level, extra args, resources",
		set: []string{
			"--set", "controller.logLevel=debug,speaker.logLevel=warn",
			"--set-json", `speaker.extraArgs=["--gratuitous-interval=1m"]`,
			"--set-json", `controller.extraArgs=["--lb-class=barelb","--kube-api-burst=50"]`,
			"--set-json", `speaker.resources={"requests":{"cpu":"10m","memory":"32Mi"}}`,
		},
		edit: func(t *testing.T, want objects) {
			setContainer(t, want[controllerKey], func(c map[string]any) {
				replaceArg(c, "--log-level=info", "--log-level=debug")
				appendArgs(c, "--lb-class=barelb", "--kube-api-burst=50")
			})
			setContainer(t, want[speakerKey], func(c map[string]any) {
				replaceArg(c, "--log-level=info", "--log-level=warn")
				appendArgs(c, "--gratuitous-interval=1m")
				// Helm merges maps: the default limits stay.
				c["resources"].(map[string]any)["requests"] = map[string]any{"cpu": "10m", "memory": "32Mi"}
			})
		},
	}, {
		name: "memberlist unencrypted, other port",
		set:  []string{"--set", "memberlist.secretName=,memberlist.port=7950"},
		edit: func(t *testing.T, want objects) {
			setContainer(t, want[controllerKey], func(c map[string]any) { appendArgs(c, "--memberlist-secret=") })
			setContainer(t, want[speakerKey], func(c map[string]any) {
				appendArgs(c, "--memberlist-port=7950")
				dropEnv(c, "BARELB_MEMBERLIST_KEY")
				dropEnv(c, "BARELB_MEMBERLIST_EXTRA_KEYS")
				for _, p := range c["ports"].([]any) {
					if p := p.(map[string]any); strings.HasPrefix(p["name"].(string), "memberlist-") {
						p["containerPort"] = float64(7950)
					}
				}
			})
			// The controller may no longer read a memberlist Secret.
			dropRules(t, want["Role/"+namespace+"/barelb-controller"], "[barelb-memberlist]")
		},
	}, {
		name: "memberlist off",
		set:  []string{"--set", "memberlist.enabled=false"},
		edit: func(t *testing.T, want objects) {
			setContainer(t, want[controllerKey], func(c map[string]any) { appendArgs(c, "--memberlist-secret=") })
			setContainer(t, want[speakerKey], func(c map[string]any) {
				appendArgs(c, "--memberlist=false")
				dropEnv(c, "BARELB_MEMBERLIST_KEY")
				dropEnv(c, "BARELB_MEMBERLIST_EXTRA_KEYS")
				var ports []any
				for _, p := range c["ports"].([]any) {
					if !strings.HasPrefix(p.(map[string]any)["name"].(string), "memberlist-") {
						ports = append(ports, p)
					}
				}
				c["ports"] = ports
			})
			dropRules(t, want["Role/"+namespace+"/barelb-controller"], "[barelb-memberlist]")
		},
	}, {
		name: "webhook off",
		set:  []string{"--set", "webhook.enabled=false"},
		edit: func(t *testing.T, want objects) { noWebhook(t, want) },
	}, {
		name: "webhook off, memberlist unencrypted: no Secret access at all",
		set:  []string{"--set", "webhook.enabled=false,memberlist.secretName="},
		edit: func(t *testing.T, want objects) {
			noWebhook(t, want)
			setContainer(t, want[controllerKey], func(c map[string]any) { appendArgs(c, "--memberlist-secret=") })
			setContainer(t, want[speakerKey], func(c map[string]any) {
				dropEnv(c, "BARELB_MEMBERLIST_KEY")
				dropEnv(c, "BARELB_MEMBERLIST_EXTRA_KEYS")
			})
			dropRules(t, want["Role/"+namespace+"/barelb-controller"], "[barelb-memberlist]")
			dropRules(t, want["Role/"+namespace+"/barelb-controller"], "[]") // create secrets
		},
	}, {
		// The certificate in the release's namespace: one Role, no second
		// Namespace (the speakers can read it then; the value's comment
		// says so).
		name: "webhook certificate in the release's namespace",
		set:  []string{"--set", "webhook.certNamespace=" + namespace},
		edit: func(t *testing.T, want objects) {
			role := want["Role/"+certNamespace+"/barelb-controller"]
			rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
			for _, k := range []string{"Namespace//" + certNamespace, "Role/" + certNamespace + "/barelb-controller",
				"RoleBinding/" + certNamespace + "/barelb-controller"} {
				delete(want, k)
			}
			main := want["Role/"+namespace+"/barelb-controller"]
			mainRules, _, _ := unstructured.NestedSlice(main.Object, "rules")
			if err := unstructured.SetNestedSlice(main.Object, append(mainRules, rules[1]), "rules"); err != nil {
				t.Fatal(err)
			}
			setContainer(t, want[controllerKey], func(c map[string]any) {
				replaceArg(c, "--webhook-cert-namespace="+certNamespace, "--webhook-cert-namespace="+namespace)
			})
		},
	}, {
		name: "no PodDisruptionBudget",
		set:  []string{"--set", "controller.podDisruptionBudget.enabled=false"},
		edit: func(t *testing.T, want objects) {
			delete(want, "PodDisruptionBudget/"+namespace+"/barelb-controller")
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			want := defaults.clone()
			tc.edit(t, want)
			sameObjects(t, e.template(t, tc.set...), want)
		})
	}
}

// TestHelmNetworkPolicy renders networkPolicy.enabled: one policy per
// program selecting its pods, admitting exactly the ports its container
// names (metrics, health, webhook or memberlist), and none by default.
func TestHelmNetworkPolicy(t *testing.T) {
	e := needsHelm(t)
	for _, k := range e.template(t).keys() {
		if strings.HasPrefix(k, "NetworkPolicy/") {
			t.Errorf("%s rendered by default", k)
		}
	}
	got := e.template(t, "--set", "networkPolicy.enabled=true",
		"--set-json", `networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]`)
	for workload, policy := range map[string]string{controllerKey: "NetworkPolicy/" + namespace + "/barelb-controller",
		speakerKey: "NetworkPolicy/" + namespace + "/barelb-speaker"} {
		np := got[policy]
		if np == nil {
			t.Fatalf("%s not rendered", policy)
		}
		selector, _, _ := unstructured.NestedMap(np.Object, "spec", "podSelector", "matchLabels")
		podLabels, _, _ := unstructured.NestedMap(got[workload].Object, "spec", "template", "metadata", "labels")
		if d := cmp.Diff(podLabels, selector); d != "" {
			t.Errorf("%s selects other pods than %s (-pods +selector):\n%s", policy, workload, d)
		}
		containerPorts := map[string]bool{}
		for _, p := range container(t, got[workload])["ports"].([]any) {
			containerPorts[p.(map[string]any)["name"].(string)] = true
		}
		admitted := map[string]bool{}
		ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
		for _, rule := range ingress {
			rule := rule.(map[string]any)
			for _, p := range rule["ports"].([]any) {
				port := p.(map[string]any)["port"].(string)
				admitted[port] = true
				if port == "metrics" && rule["from"] == nil {
					t.Errorf("%s admits the metrics port from anyone although metricsFrom is set", policy)
				}
			}
		}
		if d := cmp.Diff(containerPorts, admitted); d != "" {
			t.Errorf("%s admits other ports than %s names (-container +policy):\n%s", policy, workload, d)
		}
	}
}

// TestHelmInstall runs `helm install` against a real API server, as an
// operator would (--create-namespace), checks that every object of the
// render exists and that its RBAC is least privilege rule by rule like
// config/default's, and has the server accept the render of non-default
// values (`helm upgrade --dry-run=server`).
func TestHelmInstall(t *testing.T) {
	e := needsHelm(t)
	needsControlPlane(t)
	env := testenv.Start(t, testenv.Options{})
	kubeconfig := env.WriteKubeconfig(t)
	helm := func(t *testing.T, args ...string) []byte {
		t.Helper()
		// Helm's own state (repository cache, config) stays in the test's folder.
		home := t.TempDir()
		cmd := exec.Command(e.helm, append(args, "--kubeconfig", kubeconfig)...)
		cmd.Dir = e.root
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := helm(t, "install", release, chart, "--namespace", namespace, "--create-namespace")
	t.Logf("helm install:\n%s", out)
	ctx := context.Background()
	rendered := e.template(t)
	for _, k := range rendered.keys() {
		want := rendered[k]
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(want.GroupVersionKind())
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
			t.Errorf("%s was not created: %v", k, err)
		}
	}
	t.Run("RBAC is least privilege", func(t *testing.T) { checkAccess(t, env) })
	t.Run("the metrics Services of config/prometheus are accepted", func(t *testing.T) {
		// Only the Services: the monitoring.coreos.com CRDs are not here.
		var services []byte
		prometheus := e.kustomize(t, "config/prometheus")
		for _, k := range prometheus.keys() {
			if strings.HasPrefix(k, "Service/") {
				services = append(services, []byte("---\n")...)
				j, err := prometheus[k].MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				services = append(append(services, j...), '\n')
			}
		}
		cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "create", "--dry-run=server", "-f", "-")
		cmd.Stdin = bytes.NewReader(services)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Count(string(out), "created (server dry run)") != 2 {
			t.Fatalf("kubectl create --dry-run=server of the metrics Services: %v\n%s", err, out)
		}
		t.Logf("%s", out)
	})
	t.Run("non-default values are accepted", func(t *testing.T) {
		set := []string{"--namespace", namespace,
			"--set", "memberlist.secretName=,memberlist.port=7950,controller.replicas=3,speaker.image.tag=v9,webhook.enabled=false",
			"--set", "metrics.secure=true,networkPolicy.enabled=true",
			"--set-json", `speaker.tolerations=[{"operator":"Exists"}]`,
			"--set-json", `controller.nodeSelector={"kubernetes.io/os":"linux"}`}
		out := helm(t, append([]string{"upgrade", release, chart, "--dry-run=server"}, set...)...)
		t.Logf("helm upgrade --dry-run=server: %d bytes", len(out))
		// Helm's dry run renders; the API server's dry run admits each
		// object, replacing the installed one whole (an apply would merge
		// lists such as the container ports with Helm's).
		// The NetworkPolicies are new (the installed release has none):
		// they are created, the rest replaced.
		const newObjects = "templates/networkpolicy.yaml"
		cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "replace", "--dry-run=server", "-f", "-")
		cmd.Stdin = bytes.NewReader(e.run(t, e.helm, append([]string{"template", release, chart}, append(set, "--set", "networkPolicy.enabled=false")...)...))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl replace --dry-run=server: %v\n%s", err, out)
		} else {
			t.Logf("kubectl replace --dry-run=server:\n%s", out)
		}
		cmd = exec.Command("kubectl", "--kubeconfig", kubeconfig, "create", "--dry-run=server", "-f", "-")
		cmd.Stdin = bytes.NewReader(e.run(t, e.helm, append([]string{"template", release, chart, "--show-only", newObjects}, set...)...))
		if out, err := cmd.CombinedOutput(); err != nil || strings.Count(string(out), "created (server dry run)") != 2 {
			t.Fatalf("kubectl create --dry-run=server of the NetworkPolicies: %v\n%s", err, out)
		} else {
			t.Logf("kubectl create --dry-run=server:\n%s", out)
		}
	})
}
