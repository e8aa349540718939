// Package statuswrite runs the background passes with which a speaker
// keeps its status objects (ServiceL2Status, ServiceBGPStatus) in step
// with its plans: the plan hands over what they must say and goes on at
// once, the latest wish wins, and a pass that failed or met a stale cache
// is tried again a moment later. No announcement ever waits on the API
// server.
package statuswrite
