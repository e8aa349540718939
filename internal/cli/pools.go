package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// Conditions the controller sets on pools.
const (
	conditionValid       = "Valid"
	conditionOverlapping = "Overlapping"
)

// PoolStatus is one line of `pools`. Counts are nil for a family the pool
// has no addresses of, and while the controller has written no status.
type PoolStatus struct {
	Name          string   `json:"name"`
	Addresses     []string `json:"addresses"`
	AutoAssign    bool     `json:"autoAssign"`
	AssignedIPv4  *int64   `json:"assignedIPv4,omitempty"`
	AvailableIPv4 *int64   `json:"availableIPv4,omitempty"`
	AssignedIPv6  *int64   `json:"assignedIPv6,omitempty"`
	AvailableIPv6 *int64   `json:"availableIPv6,omitempty"`
	Problems      []string `json:"problems,omitempty"`
}

func runPools(ctx context.Context, args []string, s Streams) error {
	cmd := newCommand("pools", "pools [-o table|json] [--namespace barelb-system] [kubectl connection flags]", s)
	fs := cmd.fs
	k := bindKubeFlags(fs)
	if err := cmd.parse(args); err != nil {
		return err
	}
	if err := k.check(); err != nil {
		return err
	}
	c, err := k.client()
	if err != nil {
		return err
	}
	rows, err := Pools(ctx, c, k.namespace)
	if err != nil {
		return err
	}
	if k.output == "json" {
		return writeJSON(s.Out, rows)
	}
	return writePoolsTable(s.Out, rows)
}

// Pools reads the IPAddressPools of namespace and the usage the controller
// reports in their status.
func Pools(ctx context.Context, c client.Client, namespace string) ([]PoolStatus, error) {
	var pools barelbv1beta1.IPAddressPoolList
	if err := c.List(ctx, &pools, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing IPAddressPools in %s (are barelb's CRDs installed?): %w", namespace, err)
	}
	rows := []PoolStatus{}
	for i := range pools.Items {
		p := &pools.Items[i]
		row := PoolStatus{Name: p.Name, AutoAssign: p.Spec.AutoAssign == nil || *p.Spec.AutoAssign}
		var v4, v6 bool
		for _, a := range p.Spec.Addresses {
			row.Addresses = append(row.Addresses, string(a))
			if r, err := config.ParseAddressRange(string(a)); err == nil {
				v4 = v4 || r.From().Is4()
				v6 = v6 || r.From().Is6()
			}
		}
		st := p.Status
		row.Problems = poolProblems(st.Conditions)
		if len(st.Conditions) == 0 {
			// The controller has not written the counts: unknown, not 0.
			rows = append(rows, row)
			continue
		}
		if v4 {
			row.AssignedIPv4, row.AvailableIPv4 = int64p(st.AssignedIPv4), int64p(st.AvailableIPv4)
		}
		if v6 {
			row.AssignedIPv6, row.AvailableIPv6 = int64p(st.AssignedIPv6), int64p(st.AvailableIPv6)
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(a, b int) bool { return rows[a].Name < rows[b].Name })
	return rows, nil
}

func int64p(v int64) *int64 { return &v }

func poolProblems(conds []metav1.Condition) []string {
	if len(conds) == 0 {
		return []string{"no status yet: is barelb's controller running?"}
	}
	var out []string
	if c := meta.FindStatusCondition(conds, conditionValid); c != nil && c.Status == metav1.ConditionFalse {
		out = append(out, "invalid: "+c.Message)
	}
	if c := meta.FindStatusCondition(conds, conditionOverlapping); c != nil && c.Status == metav1.ConditionTrue {
		out = append(out, "overlapping: "+c.Message)
	}
	return out
}

// count prints a count; IPv6 counts saturate at the largest int64.
func count(v *int64) string {
	switch {
	case v == nil:
		return "-"
	case *v == math.MaxInt64:
		return ">=2^63"
	default:
		return strconv.FormatInt(*v, 10)
	}
}

func writePoolsTable(w io.Writer, rows []PoolStatus) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESSES\tAUTO ASSIGN\tIPV4 ASSIGNED\tIPV4 AVAILABLE\tIPV6 ASSIGNED\tIPV6 AVAILABLE\tPROBLEMS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%s\t%s\t%s\n", r.Name, strings.Join(r.Addresses, ","), r.AutoAssign,
			count(r.AssignedIPv4), count(r.AvailableIPv4), count(r.AssignedIPv6), count(r.AvailableIPv6),
			orNone(strings.Join(r.Problems, "; ")))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	return nil
}
