package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/barelb/barelb/internal/metrics"
)

// dashboard is the Grafana dashboard shipped for barelb's metrics.
const dashboard = "../../config/grafana/barelb.json"

// describedNames records the name and labels of every metric registered
// on it, from the collectors' descriptors: a Vec with no series yet and a
// collector read at scrape time have no samples to gather, but a
// descriptor each.
type describedNames map[string][]string

var (
	fqName         = regexp.MustCompile(`fqName: "([^"]+)"`)
	variableLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

func (n describedNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		name := fqName.FindStringSubmatch(d.String())
		if name == nil {
			continue
		}
		n[name[1]] = []string{}
		if labels := variableLabels.FindStringSubmatch(d.String()); labels != nil && labels[1] != "" {
			n[name[1]] = strings.Split(labels[1], ",")
		}
	}
	return nil
}

func (n describedNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = n.Register(c)
	}
}

func (n describedNames) Unregister(prometheus.Collector) bool { return false }

// registeredNames are the metrics the controller and the speaker export.
func registeredNames(t *testing.T) describedNames {
	t.Helper()
	names := describedNames{}
	if _, err := metrics.NewController(names); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.NewSpeaker(names, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.NewSpeakerBGP(names); err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("only %d metrics registered: %v", len(names), names)
	}
	return names
}

type panel struct {
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// exprs maps each panel expression of the dashboard to its panel's title.
func exprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboard, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s has no title, uid or panels", dashboard)
	}
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has an empty query", p.Title)
				}
				out[tg.Expr] = p.Title
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// barelbMetric matches the metric names in a PromQL expression; byLabels
// the label lists of its aggregations.
var (
	barelbMetric = regexp.MustCompile(`\bbarelb_[a-z0-9_]+`)
	byLabels     = regexp.MustCompile(`\bby \(([^)]*)\)`)
)

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"instance", "job"}

// balanced tells whether the brackets of expr pair up.
func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range expr {
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0
}

// TestDashboard: every metric a panel queries is one barelb registers, it
// aggregates by labels those metrics have, and every metric barelb
// registers is on the dashboard.
func TestDashboard(t *testing.T) {
	registered := registeredNames(t)
	shown := map[string]bool{}
	for expr, title := range exprs(t) {
		if !balanced(expr) {
			t.Errorf("panel %q: unbalanced brackets in %s", title, expr)
		}
		names := barelbMetric.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("panel %q queries no barelb metric: %s", title, expr)
		}
		known := map[string]bool{}
		for _, l := range targetLabels {
			known[l] = true
		}
		for _, n := range names {
			shown[n] = true
			labels, ok := registered[n]
			if !ok {
				t.Errorf("panel %q queries %s, which barelb does not export", title, n)
			}
			for _, l := range labels {
				known[l] = true
			}
		}
		for _, by := range byLabels.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(by[1], ",") {
				if l = strings.TrimSpace(l); !known[l] {
					t.Errorf("panel %q aggregates by %q, a label none of its metrics has: %s", title, l, expr)
				}
			}
		}
	}
	var missing []string
	for n := range registered {
		if !shown[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no panel shows %v", missing)
	}
}
