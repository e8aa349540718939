package listretry

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// scripted answers List with its errors in turn, then with a list.
type scripted struct {
	errs  []error
	calls int
}

func (s *scripted) List(metav1.ListOptions) (runtime.Object, error) {
	s.calls++
	if s.calls <= len(s.errs) {
		return nil, s.errs[s.calls-1]
	}
	return &corev1.NodeList{}, nil
}

func (s *scripted) Watch(metav1.ListOptions) (watch.Interface, error) {
	return nil, errors.New("not used")
}

func TestList(t *testing.T) {
	away := errors.New("dial tcp 198.51.100.10:6443: connect: connection refused")
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC"))
	tests := []struct {
		name      string
		errs      []error
		wantCalls int
		wantErr   error
		wantSlept time.Duration
	}{
		{name: "an answer at once", wantCalls: 1},
		{name: "an API server away is asked again every interval until it answers",
			errs: []error{away, away, apierrors.NewServiceUnavailable("starting"), apierrors.NewTimeoutError("slow", 1)}, wantCalls: 5, wantSlept: 4 * time.Second},
		{name: "a refusal goes to the reflector at once", errs: []error{away, forbidden}, wantCalls: 2, wantErr: forbidden, wantSlept: time.Second},
		{name: "patience runs out", errs: []error{away, away, away, away, away, away, away, away, away, away, away, away}, wantCalls: 11, wantErr: away, wantSlept: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var now time.Time
			var slept time.Duration
			lw := &scripted{errs: tt.errs}
			p := Wrap(lw, Options{Interval: time.Second, Patience: 10 * time.Second,
				now:   func() time.Time { return now },
				sleep: func(d time.Duration) { slept += d; now = now.Add(d) }})
			_, err := p.List(metav1.ListOptions{})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("List error = %v, want %v", err, tt.wantErr)
			}
			got := struct {
				Calls int
				Slept time.Duration
			}{lw.calls, slept}
			want := struct {
				Calls int
				Slept time.Duration
			}{tt.wantCalls, tt.wantSlept}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
