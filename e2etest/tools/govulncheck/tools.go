//go:build tools

// Package govulncheck pins govulncheck, which `make lint` runs, and the Go
// vulnerability database it reads, in a module of its own: its
// golang.org/x/tools would otherwise move the versions the other tools
// are built with. The database is golang.org/x/vulndb at the version in
// go.mod (its data/osv reports), indexed into bin/vulndb by its own
// indexdb: vuln.go.dev is not reachable from the machines this project
// runs on, the module proxy is. Bump the version to take newer reports.
package govulncheck

import (
	_ "golang.org/x/vuln/cmd/govulncheck"
	_ "golang.org/x/vulndb/cmd/indexdb"
)
