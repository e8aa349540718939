// Package metrics defines barelb's Prometheus metrics. Collectors are made
// by constructors and registered on the registry the caller passes
// (controller-runtime's, in the binaries), so that tests can use their own.
package metrics
