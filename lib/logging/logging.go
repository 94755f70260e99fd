// Package logging builds the JSON slog logger every tidings process uses.
// It is the one logger constructor: a process builds its logger here once,
// at start, and passes it down; nothing logs through slog's default logger.
package logging

import (
	"io"
	"log/slog"
	"os"
)

// New returns a JSON logger to stderr at level (slog's level names, any
// case: "debug", "info", "warn", "error", also with an offset such as
// "info+2"; anything else is info), with component set on every record.
func New(level, component string) *slog.Logger {
	return NewTo(os.Stderr, level, component)
}

// NewTo is New writing to w.
func NewTo(w io.Writer, level, component string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("component", component)
}

// Discard returns a logger that writes nothing: what a library uses when
// its caller gives it no logger.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Or returns log, or Discard() when log is nil.
func Or(log *slog.Logger) *slog.Logger {
	if log == nil {
		return Discard()
	}
	return log
}
