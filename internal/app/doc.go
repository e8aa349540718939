// Package app is the wiring barelb's two programs, controller and speaker,
// share: command-line flags, logging, the Kubernetes client configuration,
// and a controller-runtime manager that serves metrics and health probes.
//
// It holds no load-balancing logic. Each program's Run function (RunController,
// RunSpeaker) takes its arguments, environment and output streams as values,
// so the programs' main functions stay a few lines long and tests can run the
// same code without a process of their own.
package app
