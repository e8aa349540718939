package metrics_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/barelb/barelb/internal/testenv"
)

// The alert rules: the chart's file (plain rule groups, what promtool
// reads) and the PrometheusRule of config/prometheus, which holds the same
// groups under spec.
const (
	alertRules     = "../../config/helm/barelb/files/alerts.yaml"
	prometheusRule = "../../config/prometheus/prometheusrule.yaml"
	alertTests     = "testdata/alerts.test.yaml"
)

type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

var metricName = regexp.MustCompile(`\bbarelb_[a-z0-9_]+`)

// TestAlertsReadExportedMetrics: every metric an alert reads is one the
// controller or the speaker exports, so that a renamed metric cannot
// silence an alert; and the PrometheusRule of config/prometheus holds the
// chart's groups.
func TestAlertsReadExportedMetrics(t *testing.T) {
	names := registeredNames(t)
	var rules ruleGroups
	readYAML(t, alertRules, &rules)
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts++
			used := metricName.FindAllString(r.Expr, -1)
			if len(used) == 0 {
				t.Errorf("alert %s reads no barelb metric: %s", r.Alert, r.Expr)
			}
			for _, name := range used {
				if _, ok := names[name]; !ok {
					t.Errorf("alert %s reads %s, which neither program exports", r.Alert, name)
				}
			}
		}
	}
	if alerts < 8 {
		t.Errorf("%d alerts, want at least 8", alerts)
	}
	var object struct {
		Kind string     `json:"kind"`
		Spec ruleGroups `json:"spec"`
	}
	readYAML(t, prometheusRule, &object)
	if object.Kind != "PrometheusRule" {
		t.Fatalf("%s is a %q, want a PrometheusRule", prometheusRule, object.Kind)
	}
	if d := cmp.Diff(rules, object.Spec); d != "" {
		t.Errorf("%s differs from %s (-chart +kustomize):\n%s", prometheusRule, alertRules, d)
	}
}

// TestAlertRules runs promtool (built from the module proxy by `make
// tools`, e2etest/tools/promtool): `check rules` on the alerts, and `test
// rules` on testdata/alerts.test.yaml, which shows each alert firing on a
// series that should fire it and not on one that should not.
func TestAlertRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bin/promtool, which `make tools` builds; not in -short")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	promtool := filepath.Join(root, "bin", "promtool")
	if _, err := os.Stat(promtool); err != nil {
		t.Fatalf("bin/promtool is missing: run `make tools` (make test does): %v", err)
	}
	dir := t.TempDir()
	for src, dst := range map[string]string{alertRules: "alerts.yaml", alertTests: "alerts.test.yaml"} {
		raw, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts.test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}
