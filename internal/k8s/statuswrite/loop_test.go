package statuswrite

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// TestLoop: the latest wish is written; a failed pass is tried again
// after Retry with the wish of the moment.
func TestLoop(t *testing.T) {
	var mu sync.Mutex
	var got []string
	fail := true
	l := &Loop[string]{Retry: 20 * time.Millisecond, Log: testr.New(t), What: "things",
		Pass: func(_ context.Context, want string) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, want)
			if fail {
				fail = false
				return false, errors.New("API server away")
			}
			return false, nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	l.Set("a")
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		last := ""
		if n > 0 {
			last = got[n-1]
		}
		mu.Unlock()
		if n >= 2 && last == "a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("passes %v: want a failed pass, then another one", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.Set("b")
	for {
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if last == "b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("passes %v: the new wish was not written", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestLoopRechecks: without a new wish, a pass still runs every Recheck
// (a status someone else changed is written back).
func TestLoopRechecks(t *testing.T) {
	passes := make(chan string, 16)
	l := &Loop[string]{Recheck: 10 * time.Millisecond, Log: testr.New(t), What: "things",
		Pass: func(_ context.Context, want string) (bool, error) {
			select {
			case passes <- want:
			default:
			}
			return false, nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	l.Set("a")
	for i := range 3 {
		select {
		case got := <-passes:
			if got != "a" {
				t.Fatalf("pass %d wrote %q, want a", i, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d passes after one wish: no recheck", i)
		}
	}
}
