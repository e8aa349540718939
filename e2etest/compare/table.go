package compare

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// A metric is one row of the table: a number per implementation (or a
// text, for a yes/no finding), in the row's unit.
type metric struct {
	order int
	name  string
	num   map[string]float64
	text  map[string]string
}

// results collects the metrics of both implementations.
type results struct {
	mu    sync.Mutex
	rows  map[string]*metric
	order int
}

func newResults() *results { return &results{rows: map[string]*metric{}} }

func (r *results) row(name string) *metric {
	m, ok := r.rows[name]
	if !ok {
		r.order++
		m = &metric{order: r.order, name: name, num: map[string]float64{}, text: map[string]string{}}
		r.rows[name] = m
	}
	return m
}

// set records a number of impl for the row name (its unit in the name).
func (r *results) set(impl, name string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.row(name).num[impl] = v
}

// setText records a finding that is not a number.
func (r *results) setText(impl, name, v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.row(name).text[impl] = v
}

// setDurations records the median and worst of ds in milliseconds.
func (r *results) setDurations(impl, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r.set(impl, name+", median (ms)", ms(s[len(s)/2]))
	r.set(impl, name+", worst (ms)", ms(s[len(s)-1]))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// write prints the table: one row per metric, a column per
// implementation (in the order given) and the ratio of the first to the
// second.
func (r *results) write(w io.Writer, impls []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rows := make([]*metric, 0, len(r.rows))
	for _, m := range r.rows {
		rows = append(rows, m)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].order < rows[j].order })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "| scenario\t| %s\t| ratio\t|\n", strings.Join(impls, "\t| "))
	fmt.Fprintf(tw, "%s|\n", strings.Repeat("|---\t", len(impls)+2))
	for _, m := range rows {
		cells := make([]string, len(impls))
		for i, impl := range impls {
			if t, ok := m.text[impl]; ok {
				cells[i] = t
			} else if v, ok := m.num[impl]; ok {
				cells[i] = number(v)
			} else {
				cells[i] = "—"
			}
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t|\n", m.name, strings.Join(cells, "\t| "), ratio(m, impls))
	}
	_ = tw.Flush()
}

// ratio is first/second, when both are numbers and the second is not 0.
func ratio(m *metric, impls []string) string {
	if len(impls) != 2 {
		return ""
	}
	a, okA := m.num[impls[0]]
	b, okB := m.num[impls[1]]
	if !okA || !okB {
		return ""
	}
	if b == 0 {
		if a == 0 {
			return "="
		}
		return "∞"
	}
	return fmt.Sprintf("%.2g×", a/b)
}

func number(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e6:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
