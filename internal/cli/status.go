package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// ServiceStatus is one line of `status`.
type ServiceStatus struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	// Pool is the pool the controller took the addresses from.
	Pool string `json:"pool,omitempty"`
	// L2Nodes announce the Service in layer-2 mode.
	L2Nodes []string `json:"l2Nodes,omitempty"`
	// BGP are the nodes advertising the Service and their peers.
	BGP []BGPAnnouncement `json:"bgp,omitempty"`
	// Conditions are barelb's conditions on the Service
	// (barelb.io/AddressAssigned, barelb.io/Announced).
	Conditions []ServiceCondition `json:"conditions,omitempty"`
	// Problems are in words, most important first.
	Problems []string `json:"problems,omitempty"`
}

// ServiceCondition is one of barelb's conditions on a Service.
type ServiceCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// barelbConditions are the condition types the controller writes, in
// the order shown.
var barelbConditions = []string{barelbv1beta1.ConditionAddressAssigned, barelbv1beta1.ConditionAnnounced}

func conditionsOf(svc *corev1.Service) []ServiceCondition {
	var out []ServiceCondition
	for _, typ := range barelbConditions {
		for _, c := range svc.Status.Conditions {
			if c.Type == typ {
				out = append(out, ServiceCondition{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message})
			}
		}
	}
	return out
}

// problems are what the Service's conditions say is wrong, when the
// controller writes them; otherwise what its statuses suggest (a
// controller older than the conditions).
func problems(row ServiceStatus) []string {
	var out []string
	said := map[string]bool{}
	for _, c := range row.Conditions {
		said[c.Type] = true
		// Without an address, not being announced says nothing new.
		if c.Status != string(metav1.ConditionTrue) && c.Reason != barelbv1beta1.AnnouncedReasonNoAddress {
			out = append(out, c.Reason+": "+c.Message)
		}
	}
	if !said[barelbv1beta1.ConditionAddressAssigned] && len(row.Addresses) == 0 {
		out = append(out, "pending: no address assigned")
	}
	if !said[barelbv1beta1.ConditionAnnounced] && len(row.Addresses) > 0 && len(row.L2Nodes) == 0 && len(row.BGP) == 0 {
		out = append(out, "not announced: no node reports announcing it")
	}
	return out
}

// BGPAnnouncement is one node advertising a Service to its peers.
type BGPAnnouncement struct {
	Node  string   `json:"node"`
	Peers []string `json:"peers"`
}

func runStatus(ctx context.Context, args []string, s Streams) error {
	cmd := newCommand("status", "status [-o table|json] [--namespace barelb-system] [kubectl connection flags]", s)
	fs := cmd.fs
	k := bindKubeFlags(fs)
	lbClass := fs.String("lb-class", "", "the load-balancer class barelb serves (empty: Services without a class)")
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
	rows, err := Status(ctx, c, k.namespace, *lbClass)
	if err != nil {
		return err
	}
	if k.output == "json" {
		return writeJSON(s.Out, rows)
	}
	if err := writeStatusTable(s.Out, rows); err != nil {
		return err
	}
	nodes, err := NodeProblems(ctx, c)
	if err != nil {
		return err
	}
	return writeNodeProblems(s.Out, nodes)
}

// NodeProblem is a speaker's standing problem, as its Node's Events tell.
type NodeProblem struct {
	Node    string `json:"node"`
	Problem string `json:"problem"`
}

// nodeProblemReasons pair the speakers' Warning Events on Nodes with the
// Normal Event that ends each.
var nodeProblemReasons = map[string]string{
	"SpeakerPartition":   "SpeakerPartitionHealed",
	"MembershipFallback": "MembershipFormed",
}

// NodeProblems reads the speakers' Events on Nodes and returns, per node
// and kind, the latest Warning not followed by its Normal Event: a
// partition of the speakers' gossip, memberlist not formed.
func NodeProblems(ctx context.Context, c client.Client) ([]NodeProblem, error) {
	var events corev1.EventList
	if err := c.List(ctx, &events, client.MatchingFields{"involvedObject.kind": "Node"}); err != nil {
		return nil, fmt.Errorf("listing the Nodes' Events: %w", err)
	}
	type key struct{ node, reason string }
	warnings, ends := map[key]*corev1.Event{}, map[key]*corev1.Event{}
	for i := range events.Items {
		e := &events.Items[i]
		for warning, end := range nodeProblemReasons {
			k := key{e.InvolvedObject.Name, warning}
			latest := map[string]map[key]*corev1.Event{warning: warnings, end: ends}[e.Reason]
			if latest != nil && (latest[k] == nil || later(e, latest[k])) {
				latest[k] = e
			}
		}
	}
	var out []NodeProblem
	for k, w := range warnings {
		if end := ends[k]; end != nil && !eventTime(w).After(eventTime(end)) {
			continue
		}
		out = append(out, NodeProblem{Node: k.node, Problem: w.Reason + ": " + strings.TrimSpace(w.Message)})
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Node != out[b].Node {
			return out[a].Node < out[b].Node
		}
		return out[a].Problem < out[b].Problem
	})
	return out, nil
}

func writeNodeProblems(w io.Writer, problems []NodeProblem) error {
	if len(problems) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "\nNODE\tSPEAKER PROBLEM")
	for _, p := range problems {
		fmt.Fprintf(tw, "%s\t%s\n", p.Node, p.Problem)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	return nil
}

// serviceKey names a Service as namespace/name.
type serviceKey struct{ namespace, name string }

// Status reads the LoadBalancer Services barelb serves and what barelb
// reports about them: pools and status objects in namespace, and Events.
func Status(ctx context.Context, c client.Client, namespace, lbClass string) ([]ServiceStatus, error) {
	var services corev1.ServiceList
	if err := c.List(ctx, &services); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	var l2 barelbv1beta1.ServiceL2StatusList
	if err := c.List(ctx, &l2, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing ServiceL2Status objects in %s (are barelb's CRDs installed?): %w", namespace, err)
	}
	var bgp barelbv1beta1.ServiceBGPStatusList
	if err := c.List(ctx, &bgp, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing ServiceBGPStatus objects in %s (are barelb's CRDs installed?): %w", namespace, err)
	}
	var events corev1.EventList
	if err := c.List(ctx, &events, client.MatchingFields{"involvedObject.kind": "Service"}); err != nil {
		return nil, fmt.Errorf("listing the Services' Events: %w", err)
	}

	l2Nodes := map[serviceKey][]string{}
	for _, st := range l2.Items {
		key := statusService(st.Labels, st.Status.ServiceNamespace, st.Status.ServiceName)
		if st.Status.Node != "" {
			l2Nodes[key] = append(l2Nodes[key], st.Status.Node)
		}
	}
	bgpNodes := map[serviceKey][]BGPAnnouncement{}
	for _, st := range bgp.Items {
		key := statusService(st.Labels, st.Status.ServiceNamespace, st.Status.ServiceName)
		if st.Status.Node != "" {
			peers := append([]string(nil), st.Status.Peers...)
			sort.Strings(peers)
			bgpNodes[key] = append(bgpNodes[key], BGPAnnouncement{Node: st.Status.Node, Peers: peers})
		}
	}

	var rows []ServiceStatus
	for i := range services.Items {
		svc := &services.Items[i]
		if !config.ServesService(svc, lbClass) {
			continue
		}
		key := serviceKey{svc.Namespace, svc.Name}
		row := ServiceStatus{
			Namespace: svc.Namespace,
			Name:      svc.Name,
			Addresses: ingressAddresses(svc),
			Pool:      svc.Annotations[config.AnnotationAllocatedFromPool],
			L2Nodes:   uniqueSorted(l2Nodes[key]),
			BGP:       bgpNodes[key],
		}
		sort.Slice(row.BGP, func(a, b int) bool { return row.BGP[a].Node < row.BGP[b].Node })
		row.Conditions = conditionsOf(svc)
		row.Problems = problems(row)
		if w := latestWarning(svc, events.Items, len(row.Addresses) == 0); w != "" && !slices.Contains(row.Problems, w) {
			row.Problems = append(row.Problems, w)
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(a, b int) bool {
		if rows[a].Namespace != rows[b].Namespace {
			return rows[a].Namespace < rows[b].Namespace
		}
		return rows[a].Name < rows[b].Name
	})
	return rows, nil
}

// statusService finds the Service a status object is about: by its labels,
// or by its status when the labels are missing.
func statusService(labels map[string]string, namespace, name string) serviceKey {
	if labels[barelbv1beta1.LabelServiceName] != "" {
		return serviceKey{labels[barelbv1beta1.LabelServiceNamespace], labels[barelbv1beta1.LabelServiceName]}
	}
	return serviceKey{namespace, name}
}

func ingressAddresses(svc *corev1.Service) []string {
	out := []string{}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		switch {
		case in.IP != "":
			out = append(out, in.IP)
		case in.Hostname != "":
			out = append(out, in.Hostname)
		}
	}
	return out
}

func uniqueSorted(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// eventTime is when an Event last happened.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	default:
		return e.CreationTimestamp.Time
	}
}

// latestWarning returns "Reason: message" of the Service's latest Warning
// Event, if it still matters: when no Normal Event came after it (a
// later success makes it history), or when the Service has no address
// at all.
func latestWarning(svc *corev1.Service, events []corev1.Event, pending bool) string {
	var warning, normal *corev1.Event
	for i := range events {
		e := &events[i]
		if e.InvolvedObject.Namespace != svc.Namespace || e.InvolvedObject.Name != svc.Name {
			continue
		}
		if e.InvolvedObject.UID != "" && e.InvolvedObject.UID != svc.UID {
			continue // about an earlier Service of the same name
		}
		latest := &normal
		if e.Type == corev1.EventTypeWarning {
			latest = &warning
		}
		if *latest == nil || later(e, *latest) {
			*latest = e
		}
	}
	if warning == nil || (!pending && normal != nil && !eventTime(warning).After(eventTime(normal))) {
		return ""
	}
	return warning.Reason + ": " + strings.TrimSpace(warning.Message)
}

// later orders Events by time, then by name for a stable answer.
func later(a, b *corev1.Event) bool {
	ta, tb := eventTime(a), eventTime(b)
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return a.Name > b.Name
}

func writeJSON(w io.Writer, v interface{}) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func writeStatusTable(w io.Writer, rows []ServiceStatus) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tADDRESSES\tPOOL\tASSIGNED\tANNOUNCED\tL2 NODE\tBGP NODE(PEERS)\tPROBLEMS")
	for _, r := range rows {
		addrs := strings.Join(r.Addresses, ",")
		if addrs == "" {
			addrs = "<pending>"
		}
		var bgp []string
		for _, b := range r.BGP {
			bgp = append(bgp, b.Node+"("+strings.Join(b.Peers, ",")+")")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Name, addrs, orNone(r.Pool),
			conditionCell(r, barelbv1beta1.ConditionAddressAssigned), conditionCell(r, barelbv1beta1.ConditionAnnounced),
			orNone(strings.Join(r.L2Nodes, ",")), orNone(strings.Join(bgp, " ")), orNone(strings.Join(r.Problems, "; ")))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	return nil
}

// conditionCell is a condition's reason, marked when it is not True:
// "IPAllocated", "!NoPoolAdmits"; "<none>" without the condition.
func conditionCell(r ServiceStatus, typ string) string {
	for _, c := range r.Conditions {
		if c.Type == typ {
			if c.Status == string(metav1.ConditionTrue) {
				return c.Reason
			}
			return "!" + c.Reason
		}
	}
	return "<none>"
}
