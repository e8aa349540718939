package bgpadvertiser

import (
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/bgp"
)

// step is one thing happening to the tracker, and the Events it must send
// (reason and message fragments; none when empty).
type step struct {
	at        time.Duration
	configure map[string]sessionInfo
	event     *bgp.Event
	bfdDown   string // BFD declared "r" down with this diagnostic
	check     map[string]bgp.PeerStatus
	want      []string // "Reason: fragment|fragment"
}

func TestSessionTracker(t *testing.T) {
	router := netip.MustParseAddr("198.51.100.100")
	plain := map[string]sessionInfo{"r": {Address: router}}
	secretPW := map[string]sessionInfo{"r": {Address: router, Password: true, PasswordSecret: "md5", Namespace: namespace}}
	specPW := map[string]sessionInfo{"r": {Address: router, Password: true}}
	up := &bgp.Event{Peer: "r", State: "established", Up: true}
	down := &bgp.Event{Peer: "r", State: "idle", WasUp: true, Reason: "notification-received: hold timer expired"}
	active := func(reason string) map[string]bgp.PeerStatus {
		return map[string]bgp.PeerStatus{"r": {Peer: "r", State: "active", Reason: reason}}
	}
	timeout := "dial tcp 198.51.100.1:0->198.51.100.100:179: i/o timeout"
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "up once, down once, no repeats", steps: []step{
			{configure: plain},
			{event: up, want: []string{ReasonSessionEstablished + ": node \"n1\"|198.51.100.100 established"}},
			{event: up},
			{at: time.Minute, check: map[string]bgp.PeerStatus{"r": {Up: true}}},
			{event: down, want: []string{ReasonSessionDown + ": node \"n1\"|hold timer expired"}},
			{event: &bgp.Event{Peer: "r", State: "active"}},
			{event: up, want: []string{ReasonSessionEstablished + ": "}},
		}},
		{name: "not established: told once per wait, with the MD5 hint naming the Secret", steps: []step{
			{configure: secretPW},
			{at: 10 * time.Second, check: active(timeout)},
			{at: 15 * time.Second, check: active(timeout), want: []string{ReasonSessionNotEstablished + `: not established after 15s|i/o timeout|TCP MD5|"password" key of Secret barelb-system/md5`}},
			{at: 60 * time.Second, check: active(timeout)},
			{event: up, want: []string{ReasonSessionEstablished + ": "}},
			{at: 61 * time.Second, event: down, want: []string{ReasonSessionDown + ": "}},
			{at: 70 * time.Second, check: active(timeout)},
			{at: 76 * time.Second, check: active(timeout), want: []string{ReasonSessionNotEstablished + ": after 15s"}},
		}},
		{name: "spec.password named as such", steps: []step{
			{configure: specPW},
			{at: 20 * time.Second, check: active(timeout), want: []string{ReasonSessionNotEstablished + ": TCP MD5|spec.password"}},
		}},
		{name: "no password: refused connections explained", steps: []step{
			{configure: plain},
			{at: 20 * time.Second, check: active("dial tcp …: connect: connection refused"), want: []string{ReasonSessionNotEstablished + ": refuses TCP connections"}},
		}},
		{name: "a changed peer (the Secret fixed) starts a new wait", steps: []step{
			{configure: secretPW},
			{at: 20 * time.Second, check: active(timeout), want: []string{ReasonSessionNotEstablished + ": "}},
			{at: 21 * time.Second, configure: map[string]sessionInfo{"r": {Address: router, Password: true, PasswordSecret: "md5-new", Namespace: namespace}}},
			{at: 30 * time.Second, check: active(timeout)},
			{at: 37 * time.Second, check: active(timeout), want: []string{ReasonSessionNotEstablished + ": md5-new"}},
		}},
		{name: "BFD's verdict explains the down", steps: []step{
			{configure: plain},
			{event: up, want: []string{ReasonSessionEstablished + ": "}},
			{bfdDown: "ControlDetectionTimeExpired"},
			{event: &bgp.Event{Peer: "r", State: "idle", WasUp: true, Reason: "read-failed"}, want: []string{ReasonSessionDown + ": BFD declared the peer down (ControlDetectionTimeExpired)"}},
		}},
		{name: "events of unknown or removed peers are ignored", steps: []step{
			{configure: plain},
			{configure: map[string]sessionInfo{}},
			{event: up},
			{at: time.Minute, check: active(timeout)},
		}},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newSessionTracker("n1", 15*time.Second)
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				var got []news
				if s.configure != nil {
					tr.configure(now, s.configure)
				}
				if s.bfdDown != "" {
					tr.bfd("r", true, s.bfdDown)
				}
				if s.event != nil {
					ev := *s.event
					ev.Address, ev.Time = router, now
					got = append(got, tr.event(ev)...)
				}
				if s.check != nil {
					got = append(got, tr.check(now, s.check)...)
				}
				checkNews(t, i, got, s.want)
			}
		})
	}
}

func checkNews(t *testing.T, i int, got []news, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("step %d: Events %+v, want %d: %v", i, got, len(want), want)
	}
	for j, w := range want {
		reason, frags, _ := strings.Cut(w, ": ")
		if got[j].Reason != reason {
			t.Errorf("step %d: reason %s, want %s", i, got[j].Reason, reason)
		}
		wantType := corev1.EventTypeWarning
		if reason == ReasonSessionEstablished {
			wantType = corev1.EventTypeNormal
		}
		if got[j].Type != wantType {
			t.Errorf("step %d: %s Event of type %s", i, reason, got[j].Type)
		}
		for _, f := range strings.Split(frags, "|") {
			if !strings.Contains(got[j].Message, f) {
				t.Errorf("step %d: message %q lacks %q", i, got[j].Message, f)
			}
		}
	}
}

func TestProblemTracker(t *testing.T) {
	tr := problemTracker{reason: ReasonPeerInvalid}
	steps := []struct {
		problems map[string]string
		want     []string // objects told
	}{
		{map[string]string{"a": "no secret", "b": "bad ASN"}, []string{"a", "b"}},
		{map[string]string{"a": "no secret", "b": "bad ASN"}, nil},
		{map[string]string{"a": "no password key"}, []string{"a"}},
		{map[string]string{}, nil},
		{map[string]string{"a": "no password key"}, []string{"a"}},
	}
	for i, s := range steps {
		got := tr.update(s.problems)
		var objs []string
		for _, n := range got {
			objs = append(objs, n.Object)
			if n.Reason != ReasonPeerInvalid || n.Type != corev1.EventTypeWarning || n.Message != s.problems[n.Object] {
				t.Errorf("step %d: %+v", i, n)
			}
		}
		if strings.Join(objs, ",") != strings.Join(s.want, ",") {
			t.Errorf("step %d: told %v, want %v", i, objs, s.want)
		}
	}
}

func TestStatusChanges(t *testing.T) {
	st := func(ns, name string, peers ...string) *barelbv1beta1.ServiceBGPStatus {
		return &barelbv1beta1.ServiceBGPStatus{
			ObjectMeta: metav1.ObjectMeta{Name: statusName("n1", ns, name)},
			Status:     barelbv1beta1.ServiceBGPStatusStatus{Node: "n1", ServiceNamespace: ns, ServiceName: name, Peers: peers},
		}
	}
	existing := map[string]*barelbv1beta1.ServiceBGPStatus{}
	for _, s := range []*barelbv1beta1.ServiceBGPStatus{st("default", "same", "a", "b"), st("default", "fewer", "a", "b"), st("default", "gone", "a")} {
		existing[s.Name] = s
	}
	write, drop := statusChanges("n1", map[string][]string{
		"default/same": {"a", "b"}, "default/fewer": {"a"}, "default/new": {"b"},
	}, existing)
	if got := strings.Join(sortedCopy(write), ","); got != "default/fewer,default/new" {
		t.Errorf("written %s", got)
	}
	if len(drop) != 1 || drop[0].Status.ServiceName != "gone" {
		t.Errorf("dropped %+v", drop)
	}
	if statusName("n1", "default", "web") == statusName("n2", "default", "web") {
		t.Error("two nodes' statuses of one Service share a name")
	}
	if n := statusName("a-very-long-node-name-indeed", "a-long-namespace", "a-long-service-name"); len(n) > 63 {
		t.Errorf("name %q is too long", n)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
