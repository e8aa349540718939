package app

import (
	"io"
	"strings"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// NewLogger returns a logger writing to w at o.LogLevel in o.LogFormat, or
// a *UsageError when either is unknown.
//
// logr has no warning level: at "warn" only errors are written, since
// controller-runtime and barelb log everything else as information or as
// debug messages (logr's V(1)).
func NewLogger(o Options, w io.Writer) (logr.Logger, error) {
	var level zapcore.Level
	switch o.LogLevel {
	case "debug":
		level = zapcore.DebugLevel
	case "info":
		level = zapcore.InfoLevel
	case "warn":
		level = zapcore.WarnLevel
	case "error":
		level = zapcore.ErrorLevel
	default:
		return logr.Logger{}, usageErrorf("--log-level %q: want one of %s", o.LogLevel, strings.Join(logLevels, ", "))
	}
	// Timestamps that people and log collectors both read, instead of
	// zap's default of seconds since 1970.
	timeFormat := func(c *zapcore.EncoderConfig) { c.EncodeTime = zapcore.RFC3339NanoTimeEncoder }
	var encoder zap.Opts
	switch o.LogFormat {
	case "json":
		encoder = zap.JSONEncoder(timeFormat)
	case "text":
		encoder = zap.ConsoleEncoder(timeFormat)
	default:
		return logr.Logger{}, usageErrorf("--log-format %q: want one of %s", o.LogFormat, strings.Join(logFormats, ", "))
	}
	return zap.New(
		zap.WriteTo(w),
		zap.Level(level),
		encoder,
		// controller-runtime logs every failed reconcile as an error; a
		// stack trace on each would bury the messages, so only panics carry
		// one.
		zap.StacktraceLevel(zapcore.DPanicLevel),
	), nil
}
