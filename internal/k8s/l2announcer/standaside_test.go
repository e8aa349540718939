package l2announcer

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStandAsideWarning: a speaker left out of the others' memberlist says
// so once it has stood aside for standAsideWarning, not at its first plan
// (a speaker that has just started stands aside until its join is done),
// once per stretch.
func TestStandAsideWarning(t *testing.T) {
	type result struct {
		Warn  bool
		Retry time.Duration
	}
	start := time.Unix(1000, 0)
	plans := []struct {
		at       time.Duration
		standing bool
		want     result
	}{
		{at: 0, standing: true, want: result{Retry: standAsideWarning}},
		{at: 100 * time.Millisecond, standing: false}, // joined: nothing said
		{at: time.Second, standing: true, want: result{Retry: standAsideWarning}},
		{at: 2500 * time.Millisecond, standing: true, want: result{Retry: 500 * time.Millisecond}},
		{at: 3 * time.Second, standing: true, want: result{Warn: true}},
		{at: 4 * time.Second, standing: true}, // said once
		{at: 5 * time.Second, standing: false},
		{at: 6 * time.Second, standing: true, want: result{Retry: standAsideWarning}},
		{at: 8 * time.Second, standing: true, want: result{Warn: true}},
	}
	var s standAside
	for _, p := range plans {
		warn, retry := s.note(start.Add(p.at), p.standing)
		if diff := cmp.Diff(p.want, result{warn, retry}); diff != "" {
			t.Errorf("plan at %v (standing aside %v) (-want +got):\n%s", p.at, p.standing, diff)
		}
	}
}
