package l2announcer

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/k8s/statuswrite"
)

// The ServiceL2Status objects are written in the background, never by the
// plan itself: a failover must not wait on the API server, which may be
// slow or gone (a frozen kube-apiserver holds a request for as long as it
// likes). The plan hands over what the statuses must say; a few workers
// write what differs from the cache, each request with a timeout; the
// latest wish wins. While the API server does not answer, a pass stops at
// the first failure and the next one follows a little later, so that a
// large cluster does not queue thousands of doomed requests.

const (
	// statusWriteTimeout bounds one ServiceL2Status request.
	statusWriteTimeout = 5 * time.Second
	// statusWorkers write at once.
	statusWorkers = 8
)

// statusWant is what the ServiceL2Status of a Service this node announces
// must say.
type statusWant struct {
	svc    *servicecache.Service
	ifaces []string
}

// statusWriter writes this node's ServiceL2Statuses for the Reconciler.
type statusWriter struct {
	r    *Reconciler
	loop statuswrite.Loop[map[string]statusWant] // by Service key
}

func newStatusWriter(r *Reconciler) *statusWriter {
	w := &statusWriter{r: r}
	w.loop = statuswrite.Loop[map[string]statusWant]{Pass: w.pass, Log: r.Log, What: "ServiceL2Statuses"}
	return w
}

// set replaces what the statuses must say. want is the writer's from now
// on.
func (w *statusWriter) set(want map[string]statusWant) { w.loop.Set(want) }

// run writes until ctx ends.
func (w *statusWriter) run(ctx context.Context) { w.loop.Run(ctx) }

// pass writes what differs from the cache: the statuses of want, and the
// deletion of those naming this node for a Service it no longer
// announces. again is set when a write met a stale cache.
func (w *statusWriter) pass(ctx context.Context, want map[string]statusWant) (again bool, err error) {
	r := w.r
	var drop []*servicecache.Status
	r.Services.EachStatus(func(s *servicecache.Status) {
		if s.Status.Node == r.Node {
			if _, ok := want[s.Status.ServiceNamespace+"/"+s.Status.ServiceName]; !ok {
				drop = append(drop, s)
			}
		}
	})
	jobs := make(chan func(context.Context) error)
	var (
		wg     sync.WaitGroup
		emu    sync.Mutex
		errs   []error
		stale  bool
		failed atomic.Bool
	)
	for range statusWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				jctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
				err := job(jctx)
				cancel()
				emu.Lock()
				switch {
				case isStale(err):
					stale = true
				case err != nil:
					errs = append(errs, err)
					if unreachable(err) {
						failed.Store(true)
					}
				}
				emu.Unlock()
			}
		}()
	}
	feed := func(job func(context.Context) error) bool {
		if failed.Load() || ctx.Err() != nil {
			return false
		}
		jobs <- job
		return true
	}
	for _, s := range want {
		cached := r.Services.Status(statusName(s.svc.Namespace, s.svc.Name))
		if cached != nil && r.statusSays(cached.Status, s.svc, s.ifaces) {
			continue
		}
		if !feed(func(ctx context.Context) error { return r.writeStatus(ctx, cached, s.svc, s.ifaces) }) {
			break
		}
	}
	for _, s := range drop {
		key := s.Status.ServiceNamespace + "/" + s.Status.ServiceName
		if !feed(func(ctx context.Context) error { return r.dropStatus(ctx, s, key) }) {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if len(errs) > 3 {
		errs = append(errs[:3], errors.New("…"))
	}
	return stale, errors.Join(errs...)
}

// unreachable tells an error that says the API server did not answer in
// time (as opposed to refusing one request).
func unreachable(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr)
}
