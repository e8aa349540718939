package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/go-logr/logr"
)

// fields are the attributes of one GoBGP log record, those of the logger
// it was made from (GoBGP's peers log with Topic and Key, the neighbour
// address) included.
type fields map[string]any

// gobgpLogger passes GoBGP's log (log/slog since GoBGP v4) to logr
// (errors and warnings as errors and info, info at V(1), debug at V(2))
// and keeps what it says about why a session is down, by neighbour
// address: GoBGP reports the error of a failed connection attempt only in
// its log. Its handler enables every level so that GoBGP hands it the
// connection errors, which it logs at debug level.
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

func (g *gobgpLogger) note(msg string, fields fields) {
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

func kv(fields fields) []any {
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

// slog is the logger GoBGP is given; it writes to g whatever logger g
// was last reset to.
func (g *gobgpLogger) slog() *slog.Logger {
	return slog.New(&slogHandler{g: g})
}

// slogHandler is the slog.Handler behind gobgpLogger.slog: it flattens a
// record's attributes (groups as "group.key") into fields and hands them
// to the gobgpLogger.
type slogHandler struct {
	g      *gobgpLogger
	attrs  []slog.Attr // from WithAttrs, keys already qualified
	prefix string      // from WithGroup: "group." (nested: "a.b.")
}

func (h *slogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	f := make(fields, len(h.attrs)+r.NumAttrs())
	for _, a := range h.attrs {
		addAttr(f, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(f, h.prefix, a)
		return true
	})
	h.g.handle(r.Level, r.Message, f)
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := &slogHandler{g: h.g, prefix: h.prefix, attrs: make([]slog.Attr, 0, len(h.attrs)+len(attrs))}
	out.attrs = append(out.attrs, h.attrs...)
	for _, a := range attrs {
		a.Key = h.prefix + a.Key
		out.attrs = append(out.attrs, a)
	}
	return out
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &slogHandler{g: h.g, attrs: h.attrs, prefix: h.prefix + name + "."}
}

// addAttr adds a to f under prefix, groups flattened, values resolved.
func addAttr(f fields, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, ga := range v.Group() {
			addAttr(f, p, ga)
		}
		return
	}
	if a.Key == "" {
		return
	}
	f[prefix+a.Key] = v.Any()
}

// handle passes a record on: errors as errors, warnings as info, info at
// V(1), debug at V(2), as with GoBGP v3's logger interface.
func (g *gobgpLogger) handle(level slog.Level, msg string, f fields) {
	switch {
	case level >= slog.LevelError:
		g.logger().Error(nil, msg, kv(f)...)
	case level >= slog.LevelWarn:
		g.logger().Info(msg, kv(f)...)
	case level >= slog.LevelInfo:
		g.note(msg, f)
		g.logger().V(1).Info(msg, kv(f)...)
	default:
		g.note(msg, f)
		if l := g.logger().V(2); l.Enabled() {
			l.Info(msg, kv(f)...)
		}
	}
}
