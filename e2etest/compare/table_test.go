package compare

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTable(t *testing.T) {
	r := newResults()
	r.set("A", "outage (ms)", 5323)
	r.set("B", "outage (ms)", 646)
	r.setText("A", "status right", "0 of 1")
	r.setText("B", "status right", "1 of 1")
	r.set("A", "failed", 2)
	r.set("B", "failed", 0)
	r.set("A", "changed", 0)
	r.set("B", "changed", 0)
	r.set("B", "only B (s)", 0.123)
	var b strings.Builder
	r.write(&b, []string{"A", "B"})
	want := `| scenario      | A       | B       | ratio  |
|---            |---      |---      |---     |
| outage (ms)   | 5323    | 646     | 8.2×   |
| status right  | 0 of 1  | 1 of 1  |        |
| failed        | 2       | 0       | ∞      |
| changed       | 0       | 0       | =      |
| only B (s)    | —       | 0.12    |        |
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func TestSetDurations(t *testing.T) {
	r := newResults()
	r.setDurations("A", "gap", []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond})
	got := map[string]float64{}
	for name, m := range r.rows {
		got[name] = m.num["A"]
	}
	want := map[string]float64{"gap, median (ms)": 20, "gap, worst (ms)": 30}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
