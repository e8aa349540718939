package scale

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// serviceWatch counts the writes to the Services seen on one watch and
// tells when n of them satisfy done (the allocation benchmark waits for
// addresses, the conditions benchmark for conditions).
type serviceWatch struct {
	w        watch.Interface
	what     string // what done checks, for the failure message
	mu       sync.Mutex
	ok       map[string]bool
	modified int
	all      chan struct{}
	finished chan struct{}
}

// watchServices lists the benchmark's Services and watches them from
// there on.
func watchServices(b *testing.B, cs *kubernetes.Clientset, n int, what string, done func(*corev1.Service) bool) *serviceWatch {
	ctx := context.Background()
	list, err := cs.CoreV1().Services(benchNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	w, err := cs.CoreV1().Services(benchNamespace).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		b.Fatal(err)
	}
	sw := &serviceWatch{w: w, what: what, ok: map[string]bool{}, all: make(chan struct{}), finished: make(chan struct{})}
	for i := range list.Items {
		if done(&list.Items[i]) {
			sw.ok[list.Items[i].Name] = true
		}
	}
	if len(sw.ok) >= n {
		close(sw.all)
	}
	go func() {
		defer close(sw.finished)
		for ev := range w.ResultChan() {
			svc, isSvc := ev.Object.(*corev1.Service)
			if !isSvc {
				continue
			}
			sw.mu.Lock()
			if ev.Type == watch.Modified {
				sw.modified++
			}
			had := len(sw.ok) >= n
			if done(svc) {
				sw.ok[svc.Name] = true
			} else {
				delete(sw.ok, svc.Name)
			}
			if !had && len(sw.ok) >= n {
				close(sw.all)
			}
			sw.mu.Unlock()
		}
	}()
	return sw
}

// hasAddress is a done of watchServices: the Service has an address.
func hasAddress(s *corev1.Service) bool { return len(s.Status.LoadBalancer.Ingress) > 0 }

func (sw *serviceWatch) waitAll(b *testing.B, limit time.Duration) {
	select {
	case <-sw.all:
	case <-time.After(limit):
		sw.mu.Lock()
		defer sw.mu.Unlock()
		b.Fatalf("only %d Services got %s within %v", len(sw.ok), sw.what, limit)
	}
}

// writes returns the writes seen so far.
func (sw *serviceWatch) writes() int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.modified
}

// stop ends the watch and returns the writes seen.
func (sw *serviceWatch) stop() int {
	sw.w.Stop()
	<-sw.finished
	return sw.modified
}
