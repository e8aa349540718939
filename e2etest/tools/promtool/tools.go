//go:build tools

// Package tools pins promtool, which checks and unit-tests barelb's
// Prometheus alerting rules (config/prometheus). It is a module of its own
// so that Prometheus's dependencies never meet the product's.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
