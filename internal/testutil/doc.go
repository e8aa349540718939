// Package testutil holds the small helpers every barelb test uses the same
// way, so that tests read alike: Eventually polls a condition until it
// holds, Golden compares output with a file under testdata/ and rewrites
// it when the test runs with -update.
//
// It is imported only by tests and imports nothing of Kubernetes, so pure
// unit tests stay light. A real control plane for tests is internal/testenv;
// the lab is e2etest/lab.
package testutil
