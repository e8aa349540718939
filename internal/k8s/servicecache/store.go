package servicecache

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// The cache feeds client-go's Reflector, which lists, watches, re-lists
// after an expired watch and backs off on errors. The list functions below
// page through the objects themselves and hand the Reflector records, not
// typed objects, so that a whole list of typed objects never exists at
// once; watch events come one typed object at a time and become records
// in the store.

// item is a record on its way from a list to the store.
type item struct {
	key string
	rec any // *Service, *endpointSlice or *Status; nil: nothing to keep
}

func (i *item) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (i *item) DeepCopyObject() runtime.Object   { return i } // records are immutable

// itemList is a list of items as the Reflector wants it: list metadata
// with the resource version, and Items.
type itemList struct {
	metav1.ListMeta
	Items []runtime.Object
}

func (l *itemList) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (l *itemList) DeepCopyObject() runtime.Object {
	out := *l
	out.Items = append([]runtime.Object(nil), l.Items...)
	return &out
}

// listWatch pages with list (which ignores the Reflector's page size and
// resource version: it always reads the latest state, page by page) and
// watches with watchFn.
func (c *Cache) listWatch(ctx context.Context, list func(context.Context) (*itemList, error), watchFn func(metav1.ListOptions) (watch.Interface, error)) *toolscache.ListWatch {
	return &toolscache.ListWatch{
		ListFunc:        func(metav1.ListOptions) (runtime.Object, error) { return list(ctx) },
		WatchFunc:       watchFn,
		DisableChunking: true, // list pages itself
	}
}

func (c *Cache) listServices(ctx context.Context) (*itemList, error) {
	out := &itemList{}
	opts := metav1.ListOptions{Limit: c.opts.PageSize}
	for {
		page, err := c.core.Services("").List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing Services: %w", err)
		}
		if out.ResourceVersion == "" {
			out.ResourceVersion = page.ResourceVersion
		}
		for i := range page.Items {
			if rec := c.serviceRecord(&page.Items[i]); rec != nil {
				out.Items = append(out.Items, &item{key: rec.Key(), rec: rec})
			}
		}
		if opts.Continue = page.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

func (c *Cache) listSlices(ctx context.Context) (*itemList, error) {
	out := &itemList{}
	opts := metav1.ListOptions{Limit: c.opts.PageSize}
	for {
		page, err := c.discovery.EndpointSlices("").List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing EndpointSlices: %w", err)
		}
		if out.ResourceVersion == "" {
			out.ResourceVersion = page.ResourceVersion
		}
		for i := range page.Items {
			if rec := c.sliceRecord(&page.Items[i]); rec != nil {
				out.Items = append(out.Items, &item{key: page.Items[i].Namespace + "/" + page.Items[i].Name, rec: rec})
			}
		}
		if opts.Continue = page.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

func (c *Cache) listStatuses(ctx context.Context) (*itemList, error) {
	out := &itemList{}
	cont := ""
	for {
		var page barelbv1beta1.ServiceL2StatusList
		if err := c.barelb.List(ctx, &page, client.InNamespace(c.opts.StatusNamespace), client.Limit(c.opts.PageSize), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("listing ServiceL2Statuses: %w", err)
		}
		if out.ResourceVersion == "" {
			out.ResourceVersion = page.ResourceVersion
		}
		for i := range page.Items {
			rec := c.statusRecord(&page.Items[i])
			out.Items = append(out.Items, &item{key: rec.Name, rec: rec})
		}
		if cont = page.Continue; cont == "" {
			return out, nil
		}
	}
}

type kind uint8

const (
	kindService kind = iota
	kindSlice
	kindStatus
)

// store is the Reflector's store of one kind: it turns what the Reflector
// hands it into records in the Cache.
type store struct {
	c      *Cache
	kind   kind
	synced bool // Replace ran once; only the Reflector's goroutine uses it
}

var _ toolscache.Store = (*store)(nil)

// record turns a watched object into its item (a nil rec when nothing is
// kept of it).
func (s *store) record(obj any) (*item, error) {
	c := s.c
	switch o := obj.(type) {
	case *item:
		return o, nil
	case *corev1.Service:
		it := &item{key: o.Namespace + "/" + o.Name}
		if rec := c.serviceRecord(o); rec != nil {
			it.rec = rec
		}
		return it, nil
	case *discoveryv1.EndpointSlice:
		it := &item{key: o.Namespace + "/" + o.Name}
		if rec := c.sliceRecord(o); rec != nil {
			it.rec = rec
		}
		return it, nil
	case *barelbv1beta1.ServiceL2Status:
		return &item{key: o.Name, rec: c.statusRecord(o)}, nil
	}
	return nil, fmt.Errorf("service cache: unexpected %T", obj)
}

func (s *store) Add(obj any) error    { return s.Update(obj) }
func (s *store) Update(obj any) error { return s.put(obj, false) }
func (s *store) Delete(obj any) error { return s.put(obj, true) }

// put stores (or, with deleted, removes) the record of obj and tells the
// subscribers when a reader can see the difference.
func (s *store) put(obj any, deleted bool) error {
	it, err := s.record(obj)
	if err != nil {
		return err
	}
	if deleted {
		it.rec = nil
	}
	c := s.c
	c.mu.Lock()
	changed := false
	switch s.kind {
	case kindService:
		changed = c.setService(it.key, it.rec)
	case kindSlice:
		changed = c.setSlice(it.key, it.rec)
	case kindStatus:
		// Only a deletion wakes the subscribers. A ServiceL2Status is
		// deleted by a node that stopped announcing its Service; when the
		// new announcer wrote it before that node (late to learn it lost)
		// wrote it back and then deleted it, the new announcer must hear
		// of the deletion, or the Service shows no announcer until the
		// next unrelated event. Other writes are read at the next plan:
		// reacting to them would have two speakers that both think they
		// announce (a split brain) overwrite each other's writes without
		// end.
		changed = c.setStatus(it.key, it.rec) && deleted
	}
	c.mu.Unlock()
	if changed && s.synced {
		c.notify()
	}
	return nil
}

// Replace puts the records of a fresh list in place of the ones held.
func (s *store) Replace(list []any, _ string) error {
	items := make(map[string]*item, len(list))
	for _, obj := range list {
		it, err := s.record(obj)
		if err != nil {
			return err
		}
		items[it.key] = it
	}
	c := s.c
	c.mu.Lock()
	changed := false
	var held []string
	switch s.kind {
	case kindService:
		for key := range c.services {
			held = append(held, key)
		}
	case kindSlice:
		for key := range c.slices {
			held = append(held, key)
		}
	case kindStatus:
		for key := range c.statuses {
			held = append(held, key)
		}
	}
	for _, key := range held {
		if _, ok := items[key]; !ok {
			switch s.kind {
			case kindService:
				changed = c.setService(key, nil) || changed
			case kindSlice:
				changed = c.setSlice(key, nil) || changed
			case kindStatus:
				changed = c.setStatus(key, nil) || changed
			}
		}
	}
	for key, it := range items {
		switch s.kind {
		case kindService:
			changed = c.setService(key, it.rec) || changed
		case kindSlice:
			changed = c.setSlice(key, it.rec) || changed
		case kindStatus:
			c.setStatus(key, it.rec)
		}
	}
	c.mu.Unlock()
	if !s.synced {
		s.synced = true
		if c.pending.Add(-1) == 0 {
			close(c.synced)
			c.notify()
		}
		return nil
	}
	if changed {
		c.notify()
	}
	return nil
}

// The Reflector only adds, updates, deletes and replaces; nothing reads
// the cache through the Store interface.
func (s *store) List() []any                        { return nil }
func (s *store) ListKeys() []string                 { return nil }
func (s *store) Get(any) (any, bool, error)         { return nil, false, nil }
func (s *store) GetByKey(string) (any, bool, error) { return nil, false, nil }
func (s *store) Resync() error                      { return nil }

// setService stores rec (a *Service, or nil to remove) under key and
// tells whether a reader can see the difference. c.mu is held.
func (c *Cache) setService(key string, rec any) bool {
	old, had := c.services[key]
	if rec == nil {
		delete(c.services, key)
		return had
	}
	svc := rec.(*Service)
	c.services[key] = svc
	return !had || !old.sameContent(svc)
}

// setSlice stores rec (an *endpointSlice, or nil to remove) under the
// slice's key and keeps sliceOf. c.mu is held.
func (c *Cache) setSlice(key string, rec any) bool {
	old, had := c.slices[key]
	if had {
		c.unlinkSlice(old.service, key)
	}
	if rec == nil {
		delete(c.slices, key)
		return had
	}
	slice := rec.(*endpointSlice)
	c.slices[key] = slice
	c.sliceOf[slice.service] = append(c.sliceOf[slice.service], key)
	return !had || !old.sameContent(slice)
}

func (c *Cache) unlinkSlice(service, key string) {
	names := c.sliceOf[service]
	for i, n := range names {
		if n == key {
			names[i] = names[len(names)-1]
			names = names[:len(names)-1]
			break
		}
	}
	if len(names) == 0 {
		delete(c.sliceOf, service)
	} else {
		c.sliceOf[service] = names
	}
}

// setStatus stores rec (a *Status, or nil to remove) under name. c.mu is
// held.
func (c *Cache) setStatus(name string, rec any) bool {
	_, had := c.statuses[name]
	if rec == nil {
		delete(c.statuses, name)
		return had
	}
	c.statuses[name] = rec.(*Status)
	return true
}
