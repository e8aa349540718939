// Command kubectl-barelb is barelb's kubectl plugin: put it on the PATH and
// run `kubectl barelb convert|status|pools`. See internal/cli.
package main
