package membership

import (
	"strings"

	"github.com/go-logr/logr"
)

// logWriter turns memberlist's *log.Logger lines ("[LEVEL] memberlist: msg")
// into logr records at debug verbosity: V(2) for DEBUG, V(1) for the rest.
// memberlist's WARN and ERR lines are routine when a member dies (failed
// probes, refused connections); what matters is reported by Membership
// itself at V(0).
type logWriter struct {
	log logr.Logger
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		level, msg := splitLogLine(line)
		v := 1
		if level == "debug" {
			v = 2
		}
		w.log.V(v).Info(msg, "memberlistLevel", level)
	}
	return len(p), nil
}

// splitLogLine returns the lower-case level of a memberlist log line and the
// message without the level and the "memberlist: " prefix.
func splitLogLine(line string) (level, msg string) {
	level = "info"
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if lv, m, ok := strings.Cut(rest, "]"); ok {
			level, line = strings.ToLower(lv), m
		}
	}
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}
