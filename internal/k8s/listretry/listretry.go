package listretry

import (
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
)

// Defaults of Options.
const (
	DefaultInterval = time.Second
	DefaultPatience = 2 * time.Minute
)

// Options say how a list is retried; zero fields take the defaults.
type Options struct {
	// Interval is the pause after a failed list.
	Interval time.Duration
	// Patience is how long a list is retried before its error goes to
	// the reflector. The reflector waits on a stopping informer's list
	// no longer than it takes to stop, so a long patience delays nothing.
	Patience time.Duration
	// now and sleep are replaced by tests.
	now   func() time.Time
	sleep func(time.Duration)
}

// Wrap returns lw with a List that retries what the API server did not
// answer. Watches are lw's own: a reflector whose watch ends lists again.
func Wrap(lw toolscache.ListerWatcher, o Options) toolscache.ListerWatcher {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Patience <= 0 {
		o.Patience = DefaultPatience
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.sleep == nil {
		o.sleep = time.Sleep
	}
	return &patient{ListerWatcher: lw, o: o}
}

type patient struct {
	toolscache.ListerWatcher
	o Options
}

// List lists until the API server answers, a refusal comes, or patience
// runs out.
func (p *patient) List(opts metav1.ListOptions) (runtime.Object, error) {
	deadline := p.o.now().Add(p.o.Patience)
	for {
		obj, err := p.ListerWatcher.List(opts)
		if err == nil || refused(err) || !p.o.now().Before(deadline) {
			return obj, err
		}
		p.o.sleep(p.o.Interval)
	}
}

// refused tells an answer that retrying at once will not change (no
// permission, a bad request, an unknown resource) from an API server that
// did not answer, timed out or was overloaded.
func refused(err error) bool {
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err), apierrors.IsNotFound(err),
		apierrors.IsBadRequest(err), apierrors.IsInvalid(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err), apierrors.IsGone(err),
		apierrors.IsResourceExpired(err):
		return true
	}
	return false
}
