package bgp

import (
	"fmt"
	"sort"
	"sync"

	"github.com/go-logr/logr"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// gobgpLogger passes GoBGP's log to logr (errors and warnings as errors
// and info, info at V(1), debug at V(2)) and keeps what it says about why
// a session is down, by neighbour address: GoBGP reports the reason of a
// reset and the error of a failed connection attempt only in its log. It
// claims debug level so that GoBGP hands it the connection errors.
type gobgpLogger struct {
	mu      sync.Mutex
	log     logr.Logger
	reasons map[string]string
}

func newGoBGPLogger(l logr.Logger) *gobgpLogger {
	return &gobgpLogger{log: l, reasons: map[string]string{}}
}

// reset starts a new server's log.
func (g *gobgpLogger) reset(l logr.Logger) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log, g.reasons = l, map[string]string{}
}

// forget drops the reason kept for a neighbour (a new session).
func (g *gobgpLogger) forget(neighbor string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.reasons, neighbor)
}

func (g *gobgpLogger) lastReason(neighbor string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reasons[neighbor]
}

func (g *gobgpLogger) note(msg string, fields gobgplog.Fields) {
	var reason string
	switch msg {
	case "Peer Down":
		reason = fmt.Sprint(fields["Reason"])
	case "failed to connect":
		reason = fmt.Sprint(fields["Error"])
	case "state changed":
		// A session that fails before Established (a NOTIFICATION in
		// reply to our OPEN) gets no "Peer Down"; its reason is here.
		if fields["new"] != "BGP_FSM_IDLE" || fields["reason"] == nil {
			return
		}
		reason = fmt.Sprint(fields["reason"])
		if reason == "<nil>" {
			return
		}
	case "Peer Up":
		reason = ""
	default:
		return
	}
	key := fmt.Sprint(fields["Key"])
	g.mu.Lock()
	g.reasons[key] = reason
	g.mu.Unlock()
}

func (g *gobgpLogger) logger() logr.Logger {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log
}

func kv(fields gobgplog.Fields) []any {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		out = append(out, k, fields[k])
	}
	return out
}

func (g *gobgpLogger) Panic(msg string, fields gobgplog.Fields) {
	g.logger().Error(nil, msg, kv(fields)...)
	panic(msg)
}

func (g *gobgpLogger) Fatal(msg string, fields gobgplog.Fields) {
	// GoBGP calls Fatal where it cannot go on; the process ends as it
	// would with GoBGP's own logger.
	g.logger().Error(nil, msg, kv(fields)...)
	panic("gobgp: " + msg)
}

func (g *gobgpLogger) Error(msg string, fields gobgplog.Fields) {
	g.logger().Error(nil, msg, kv(fields)...)
}

func (g *gobgpLogger) Warn(msg string, fields gobgplog.Fields) {
	g.logger().Info(msg, kv(fields)...)
}

func (g *gobgpLogger) Info(msg string, fields gobgplog.Fields) {
	g.note(msg, fields)
	g.logger().V(1).Info(msg, kv(fields)...)
}

func (g *gobgpLogger) Debug(msg string, fields gobgplog.Fields) {
	g.note(msg, fields)
	if l := g.logger().V(2); l.Enabled() {
		l.Info(msg, kv(fields)...)
	}
}

func (g *gobgpLogger) SetLevel(gobgplog.LogLevel) {}

func (g *gobgpLogger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }
