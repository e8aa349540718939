package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Controller holds the controller's metrics.
type Controller struct {
	// AddressesInUse counts distinct addresses held, per pool and family.
	AddressesInUse *prometheus.GaugeVec
	// AddressesTotal counts the addresses a pool can hand out, per family.
	AddressesTotal *prometheus.GaugeVec
	// AllocationFailures counts failed allocations by reason.
	AllocationFailures *prometheus.CounterVec
	// AddressesMoved counts Services moved to a new address because their
	// old one left every pool that admits them.
	AddressesMoved prometheus.Counter
	// AssignmentConflicts counts addresses claimed by two Services at start
	// (after a restore from backup, say); the older keeps it.
	AssignmentConflicts prometheus.Counter
	// ServicesWaiting counts the Services the allocator could not give an
	// address (no pool admits them, pools exhausted, the address asked
	// for is taken, ...): the gauge the ServicesWaitingForAddress alert
	// reads.
	ServicesWaiting prometheus.Gauge
}

// NewController makes the controller's metrics and registers them on reg.
func NewController(reg prometheus.Registerer) (*Controller, error) {
	m := &Controller{
		AddressesInUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "barelb", Subsystem: "allocator", Name: "addresses_in_use",
			Help: "Addresses held by Services, per pool and family (a shared address counts once).",
		}, []string{"pool", "family"}),
		AddressesTotal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "barelb", Subsystem: "allocator", Name: "addresses_total",
			Help: "Addresses a pool can hand out, per family.",
		}, []string{"pool", "family"}),
		AllocationFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "barelb", Subsystem: "allocator", Name: "allocation_failures_total",
			Help: "Services left without an address, by reason.",
		}, []string{"reason"}),
		AddressesMoved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "barelb", Subsystem: "allocator", Name: "addresses_moved_total",
			Help: "Services moved to a new address because a pool edit removed their old one.",
		}),
		AssignmentConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "barelb", Subsystem: "allocator", Name: "assignment_conflicts_total",
			Help: "Addresses found held by two Services; the older Service keeps it.",
		}),
		ServicesWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "barelb", Subsystem: "allocator", Name: "services_waiting",
			Help: "LoadBalancer Services barelb serves that have no address because none could be allocated (see their Events for why).",
		}),
	}
	var err error
	if m.AddressesInUse, err = register(reg, m.AddressesInUse); err != nil {
		return nil, err
	}
	if m.AddressesTotal, err = register(reg, m.AddressesTotal); err != nil {
		return nil, err
	}
	if m.AllocationFailures, err = register(reg, m.AllocationFailures); err != nil {
		return nil, err
	}
	if m.AddressesMoved, err = register(reg, m.AddressesMoved); err != nil {
		return nil, err
	}
	if m.AssignmentConflicts, err = register(reg, m.AssignmentConflicts); err != nil {
		return nil, err
	}
	if m.ServicesWaiting, err = register(reg, m.ServicesWaiting); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector registered
// before, which happens when a test starts the controller twice in one
// process.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("registering metric: %w", err)
	}
	return c, nil
}
