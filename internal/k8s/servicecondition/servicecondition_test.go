package servicecondition

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNext(t *testing.T) {
	then := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	now := then.Add(time.Hour)
	old := &metav1.Condition{Type: "barelb.io/X", Status: metav1.ConditionFalse, Reason: "A", Message: "a", LastTransitionTime: metav1.NewTime(then)}
	for _, tc := range []struct {
		name     string
		existing *metav1.Condition
		want     Want
		wantTime time.Time
	}{
		{"new", nil, Want{Status: metav1.ConditionTrue, Reason: "B"}, now},
		{"same status, other reason: the transition time stays", old, Want{Status: metav1.ConditionFalse, Reason: "C", Message: "c"}, then},
		{"status changes: the transition time moves", old, Want{Status: metav1.ConditionTrue, Reason: "B"}, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Next(tc.existing, "barelb.io/X", tc.want, 3, now)
			want := metav1.Condition{Type: "barelb.io/X", Status: tc.want.Status, Reason: tc.want.Reason, Message: tc.want.Message,
				ObservedGeneration: 3, LastTransitionTime: metav1.NewTime(tc.wantTime)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestSays(t *testing.T) {
	c := &metav1.Condition{Type: "barelb.io/X", Status: metav1.ConditionTrue, Reason: "B", Message: "b", ObservedGeneration: 2}
	for _, tc := range []struct {
		name string
		cond *metav1.Condition
		want Want
		gen  int64
		says bool
	}{
		{"same", c, Want{Status: metav1.ConditionTrue, Reason: "B", Message: "b"}, 2, true},
		{"none yet", nil, Want{Status: metav1.ConditionTrue, Reason: "B", Message: "b"}, 2, false},
		{"other message", c, Want{Status: metav1.ConditionTrue, Reason: "B", Message: "c"}, 2, false},
		{"other generation", c, Want{Status: metav1.ConditionTrue, Reason: "B", Message: "b"}, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Says(tc.cond, tc.want, tc.gen); got != tc.says {
				t.Errorf("Says = %v, want %v", got, tc.says)
			}
		})
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", MaxMessage) // two bytes each
	got := clip(long)
	if len(got) > MaxMessage || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Errorf("clip: %d bytes, suffix %q", len(got), got[len(got)-8:])
	}
	if long := Next(nil, "barelb.io/X", Want{Message: long}, 0, time.Now()); long.Message != got {
		t.Errorf("Next does not clip")
	}
	if clip("short") != "short" {
		t.Errorf("a short message is changed")
	}
}
