// Package statuswrite runs the background passes with which a speaker
// keeps its status objects (ServiceL2Status, ServiceBGPStatus) in step
// with its plans: the plan hands over what they must say and goes on at
// once, the latest wish wins, and a pass that failed or met a stale cache
// is tried again a moment later. A pass also runs every few seconds
// without a new wish, so that a status changed behind the speaker's back
// (by another speaker, or by a stale request of its own that a frozen
// API server ran when it came back) is written back. No announcement ever
// waits on the API server.
package statuswrite
